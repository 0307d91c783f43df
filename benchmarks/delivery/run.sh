#!/usr/bin/env bash
# Delivery at each emulator's documented limit (HubSpot 190/10 s, a webhook receiver at
# 50/s, Braze /users/track at 50,000/min, Salesforce's 100,000 API requests/day scaled to
# 25 per 21.6 s): records/s, share of the allowed request rate used
# in steady state, throttled answers a minute, CPU seconds per million records.
# The program is crates/ebb-delivery/benches/delivery.rs; EBB_BENCH_SECONDS sets the run
# length per destination (default 40); EBB_BENCH_ONLY=salesforce,hubspot picks emulators. Writes benchmarks/results/delivery.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p ebb-delivery --bench delivery
