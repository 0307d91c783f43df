#!/usr/bin/env python3
"""Snapshot diff: ebb's DataFusion diff engine beside DuckDB, on the same Parquet files.

Two snapshots of N rows x 12 columns (default 10M) where 1% of rows changed (0.5% updated,
0.25% inserted, 0.25% deleted). ebb diffs the new file against the old one committed as a
sync snapshot; DuckDB runs the same full outer join with a NULL-safe compare of every column
and materializes the changed rows. Each side runs in its own process; time is wall clock,
memory is that process's peak RSS.

    pip install duckdb==2.0.0
    python3 benchmarks/snapshot_diff/run.py [--rows 10000000] [--keep]
    python3 benchmarks/snapshot_diff/run.py --rows 30000000 --memory-limit-gib 2.4 --spill

`--memory-limit-gib` sets ebb's diff memory limit (default 2 GiB); `--spill` runs only ebb
(no peer) and checks that its peak RSS stayed under that limit.
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

COLUMNS = [
    ("c_int", "cast(i * 7 % 100000 as integer)"),
    ("c_big", "i * 13"),
    ("c_dbl", "i / 3.0"),
    ("c_dec", "cast(i % 100000 / 100.0 as decimal(12, 2))"),
    ("c_str", "'name-' || cast(i % 50000 as varchar)"),
    ("c_email", "'user' || cast(i as varchar) || '@example.com'"),
    ("c_bool", "i % 3 = 0"),
    ("c_date", "date '2020-01-01' + cast(i % 2000 as integer)"),
    ("c_ts", "timestamp '2020-01-01 00:00:00' + to_seconds(i)"),
    ("c_plan", "case i % 4 when 0 then 'free' when 1 then 'starter' when 2 then 'pro' else 'enterprise' end"),
    ("c_null", "case when i % 10 = 0 then null else cast(i % 977 as varchar) end"),
]


def generate(dir: pathlib.Path, rows: int) -> tuple[pathlib.Path, pathlib.Path, dict]:
    import duckdb

    old, new = dir / "old.parquet", dir / "new.parquet"
    con = duckdb.connect()
    cols = ", ".join(f"{expr} as {name}" for name, expr in COLUMNS)
    con.execute(f"copy (select i as id, {cols} from range({rows}) t(i)) to '{old}' (format parquet)")
    # 0.25% deleted (i % 400 = 1), 0.5% updated (i % 200 = 2), 0.25% inserted (new ids).
    changed = {"c_str": "c_str || '-v2'", "c_dbl": "c_dbl + 1"}
    updated = ", ".join(
        f"case when id % 200 = 2 then {changed[name]} else {name} end as {name}" if name in changed else name
        for name, _ in COLUMNS
    )
    inserted = rows // 400
    con.execute(
        f"""copy (
            select id, {updated} from read_parquet('{old}') where id % 400 <> 1
            union all
            select i as id, {cols} from range({rows}, {rows + inserted}) t(i)
        ) to '{new}' (format parquet)"""
    )
    return old, new, expected_changes(rows)


def expected_changes(rows: int) -> dict:
    return {
        "deletes": len(range(1, rows, 400)),
        "updates": len(range(2, rows, 200)),
        "inserts": rows // 400,
    }


def parquet_rows(path: pathlib.Path) -> int:
    import duckdb

    return duckdb.connect().execute(f"select count(*) from read_parquet('{path}')").fetchone()[0]


def run_measured(cmd: list[str], env=None) -> tuple[float, int, str]:
    """Runs cmd; returns (wall seconds, peak RSS bytes of that process, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed with status {status}")
    return seconds, usage.ru_maxrss * 1024, out


DUCKDB_PEER = """
import duckdb, sys, json
old, new = sys.argv[1], sys.argv[2]
cols = sys.argv[3].split(",")
con = duckdb.connect()
con.execute('set enable_progress_bar = false')  # it prints to stdout, before the JSON line
differs = " or ".join(f"(o.{c} is distinct from n.{c})" for c in cols)
con.execute(f'''create table changes as
  select coalesce(n.id, o.id) as id,
         case when o.id is null then 'insert' when n.id is null then 'delete' else 'update' end as op,
         {", ".join(f"n.{c}" for c in cols)}
  from read_parquet('{old}') o full outer join read_parquet('{new}') n on o.id = n.id
  where o.id is null or n.id is null or {differs}''')
print(json.dumps(dict(con.execute("select op, count(*) from changes group by op").fetchall())))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--memory-limit-gib", type=float, default=None)
    parser.add_argument("--spill", action="store_true", help="ebb only, under the memory limit")
    parser.add_argument("--work", default=None,
                        help="folder for data and staging (default: temp); data of --rows rows there is reused")
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
    binary = target / "release" / "examples" / "snapshot_diff"

    if args.work:
        work = pathlib.Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = pathlib.Path(tempfile.mkdtemp(prefix="ebb-bench-diff-"))
    old, new = work / "old.parquet", work / "new.parquet"
    if args.work and old.exists() and new.exists() and parquet_rows(old) == args.rows:
        print(f"reusing {old} and {new} ({args.rows:,} rows)")
        expected = expected_changes(args.rows)
    else:
        print(f"generating {args.rows:,} rows x 12 columns in {work}")
        old, new, expected = generate(work, args.rows)
    snapshots = work / "snapshots"
    subprocess.run(["rm", "-rf", str(snapshots)], check=False)  # a reused folder's last run
    env = dict(os.environ)
    if args.memory_limit_gib:
        env["EBB_DIFF_MEMORY_LIMIT"] = str(int(args.memory_limit_gib * (1 << 30)))
    prep_s, prep_rss, _ = run_measured([str(binary), "prepare", str(old), str(snapshots)], env=env)
    print(f"prepare (first run with skip_initial_backfill + commit): {prep_s:.1f} s, "
          f"peak RSS {prep_rss / (1 << 30):.2f} GiB")

    ebb_s, ebb_rss, out = run_measured([str(binary), "diff", str(new), str(snapshots)], env=env)
    ebb = json.loads(out.strip().splitlines()[-1])
    for op in ("inserts", "updates", "deletes"):
        if ebb[op] != expected[op]:
            raise SystemExit(f"ebb found {ebb[op]} {op}, expected {expected[op]}")
    if args.spill:
        limit = args.memory_limit_gib or 2.0
        print(f"snapshot diff under a memory limit, {args.rows:,} rows x 12 cols, 1% changed")
        print(f"ebb: {ebb_s:.1f} s, peak RSS {ebb_rss / (1 << 30):.2f} GiB, limit {limit:.2f} GiB, "
              f"{'within' if ebb_rss <= limit * (1 << 30) else 'OVER'} the limit; "
              f"{ebb['inserts']} ins, {ebb['updates']} upd, {ebb['deletes']} del (all as expected)")
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        return

    cols = ",".join(name for name, _ in COLUMNS)
    duck_s, duck_rss, out = run_measured([sys.executable, "-c", DUCKDB_PEER, str(old), str(new), cols])
    duck = json.loads(out.strip().splitlines()[-1])
    if duck.get("update") != expected["updates"] or duck.get("insert") != expected["inserts"]:
        raise SystemExit(f"duckdb found {duck}, expected {expected}")

    gib = 1 << 30
    r = Report(
        "snapshot_diff",
        params={"rows": args.rows, "columns": 12, "changed": "1% (0.5% upd, 0.25% ins, 0.25% del)"},
        peer_name="duckdb",
    )
    r.row("time", "s", ebb_s, duck_s, better="lower")
    r.row("peak RSS", "GiB", ebb_rss / gib, duck_rss / gib, better="lower")
    r.finish()
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
