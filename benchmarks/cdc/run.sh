#!/usr/bin/env bash
# The CDC pipeline end to end, beside pg_recvlogical on the same WAL: sustained changes/s of a
# mixed workload (60 % insert, 30 % update, 10 % delete, 1,000 per transaction, 12 columns)
# into the null sink and into the Parquet lake, and commit-to-sink latency p50/p99 at a fixed
# 10,000 rows/s. The program is crates/ebb-cdc/benches/pipeline.rs (release build).
# EBB_BENCH_ROWS (default 2,000,000 changes) and EBB_BENCH_LATENCY_SECONDS (default 20) shrink
# it. Writes benchmarks/results/cdc.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p ebb-cdc --bench cdc_pipeline
