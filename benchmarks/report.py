"""Shared output for ebb's benchmark scripts: a short table and a JSON report.

Usage from a benchmark script:

    from report import Report
    r = Report("snapshot_diff", params={"rows": 10_000_000}, peer_name="duckdb")
    r.row("time", "s", ebb=4.10, peer=5.02, better="lower")
    r.finish()   # prints the table, writes benchmarks/results/snapshot_diff.json
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib


class Report:
    def __init__(self, name: str, params: dict | None = None, peer_name: str = "peer"):
        self.name = name
        self.params = params or {}
        self.peer_name = peer_name
        self.rows: list[dict] = []
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def row(self, measure: str, unit: str, ebb: float, peer: float, better: str = "lower") -> None:
        if better not in ("lower", "higher"):
            raise ValueError("better is 'lower' or 'higher'")
        ratio = ebb / peer if peer else float("nan")
        self.rows.append(
            {
                "measure": measure,
                "unit": unit,
                "ebb": ebb,
                "peer": peer,
                "peer_name": self.peer_name,
                "ratio": ratio,
                "better": better,
            }
        )

    def table(self) -> str:
        header = f"{'measure':<28}{'ebb':>12}{self.peer_name:>12}{'ratio':>9}  better"
        lines = [f"{self.name}  {self.params}", header]
        for r in self.rows:
            label = f"{r['measure']} ({r['unit']})"
            lines.append(
                f"{label:<28}{r['ebb']:>12.4g}{r['peer']:>12.4g}{r['ratio']:>8.2f}x  {r['better']}"
            )
        return "\n".join(lines)

    def finish(self, out_dir: str | os.PathLike | None = None) -> pathlib.Path:
        print(self.table())
        out = pathlib.Path(out_dir or pathlib.Path(__file__).parent / "results")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.json"
        memory_gib = None
        try:
            with open("/proc/meminfo") as f:
                memory_gib = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
        except OSError:
            pass
        report = {
            "benchmark": self.name,
            "started_at": self.started_at,
            "machine": {"cpus": os.cpu_count(), "memory_gib": memory_gib},
            "params": self.params,
            "rows": self.rows,
        }
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {path}")
        return path
