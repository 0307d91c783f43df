#!/usr/bin/env python3
"""Metrics: a metric grouped by month and a 1,000-value dimension, by ebb and by DuckDB.

A fact table of N rows (default 100M) in one Parquet file: id, ts (two years of timestamps),
product (1,000 distinct strings), amount (decimal(12,2)). ebb runs the metric query
`--metrics revenue --group-by event__product --grain month` through its metrics layer
(compiled SQL on DataFusion over the lake); DuckDB runs the equivalent SQL on the same file.
Both read every result row; the row counts and the sum of all values must agree. Each side
runs in its own process; time is wall clock of the query (ebb: compile + run + read; DuckDB:
the query), memory is that process's peak RSS.

    pip install duckdb==2.0.1
    python3 benchmarks/metrics/run.py [--rows 100000000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import Report  # noqa: E402


def generate(dir: pathlib.Path, rows: int) -> pathlib.Path:
    import duckdb

    path = dir / "events.parquet"
    con = duckdb.connect()
    con.execute(
        f"""copy (
          select i as id,
                 timestamp '2024-01-01 00:00:00' + to_seconds(cast((i * 7919) % 63072000 as bigint)) as ts,
                 'product-' || lpad(cast((i * 2654435761) % 1000 as varchar), 4, '0') as product,
                 cast(((i * 48271) % 100000) / 100.0 as decimal(12, 2)) as amount
          from range({rows}) t(i)
        ) to '{path}' (format parquet, row_group_size 1048576)"""
    )
    return path


def parquet_rows(path: pathlib.Path) -> int:
    import duckdb

    return duckdb.connect().execute(f"select count(*) from read_parquet('{path}')").fetchone()[0]


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed with status {status}")
    return seconds, usage.ru_maxrss * 1024, out


DUCKDB_PEER = """
import duckdb, sys, json, time
path = sys.argv[1]
con = duckdb.connect()
con.execute('set enable_progress_bar = false')  # it prints to stdout, before the JSON line
started = time.perf_counter()
rows = con.execute(f'''
  select cast(date_trunc('month', ts) as date) as metric_time__month, product as event__product,
         cast(sum(amount) as double) as revenue
  from read_parquet('{path}')
  group by 1, 2
  order by 1, 2''').fetchall()
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rows": len(rows), "checksum": sum(r[2] for r in rows if r[2] is not None)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--work", default=None,
                        help="folder for the data; an events.parquet of --rows rows there is reused")
    parser.add_argument("--no-build", action="store_true",
                        help="use the release binaries already built under CARGO_TARGET_DIR")
    args = parser.parse_args()

    if not args.no_build:
        subprocess.run(
            # The whole workspace, as the other release benchmarks build it: building one package
            # alone unifies dependency features differently and rebuilds DataFusion.
            ["cargo", "build", "--quiet", "--release", "--workspace", "--bins", "--examples"],
            cwd=ROOT,
            check=True,
        )
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "release" / "examples" / "metrics_bench"

    if args.work:
        work = pathlib.Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = pathlib.Path(tempfile.mkdtemp(prefix="ebb-bench-metrics-"))
    path = work / "events.parquet"
    if args.work and path.exists() and parquet_rows(path) == args.rows:
        print(f"reusing {path} ({args.rows:,} rows)")
    else:
        print(f"generating {args.rows:,} rows in {work}")
        started = time.perf_counter()
        path = generate(work, args.rows)
        print(f"  {path.stat().st_size / (1 << 30):.2f} GiB of Parquet in {time.perf_counter() - started:.1f} s")

    ebb_wall, ebb_rss, out = run_measured([str(binary), str(work)])
    ebb = json.loads(out.strip().splitlines()[-1])
    duck_wall, duck_rss, out = run_measured([sys.executable, "-c", DUCKDB_PEER, str(path)])
    duck = json.loads(out.strip().splitlines()[-1])
    if ebb["rows"] != duck["rows"] or abs(ebb["checksum"] - duck["checksum"]) > 1e-6 * abs(duck["checksum"]):
        raise SystemExit(f"results differ: ebb {ebb['rows']} rows, sum {ebb['checksum']}; "
                         f"duckdb {duck['rows']} rows, sum {duck['checksum']}")

    gib = 1 << 30
    r = Report(
        "metrics",
        params={"rows": args.rows, "group_by": "month x 1,000 products", "result_rows": ebb["rows"]},
        peer_name="duckdb",
    )
    r.row("query time", "s", ebb["seconds"], duck["seconds"], better="lower")
    r.row("process wall time", "s", ebb_wall, duck_wall, better="lower")
    r.row("peak RSS", "GiB", ebb_rss / gib, duck_rss / gib, better="lower")
    r.finish()
    if not args.keep and not args.work:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
