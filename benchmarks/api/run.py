#!/usr/bin/env python3
"""API latency of `ebb serve` under load from a second process (wrk), on a Postgres state store.

A private PostgreSQL cluster (initdb in a temp folder, fsync on) holds the state store; it is
seeded with N runs and N outbox events of one tenant (plus as many of another tenant, so
tenant filtering is on the path). One release `ebb serve` process serves the example project.
wrk drives each route for a fixed time with a fixed number of connections and reports
requests/s and the latency distribution. The peer is the same server's `/healthz`, which
touches no state store: the HTTP floor each route is compared with.

    apt-get install wrk
    cargo build --release -p ebb-cli
    python3 benchmarks/api/run.py [--ebb target/release/ebb] [--seconds 15] [--connections 32] [--rows 20000]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import Report  # noqa: E402


def pg_bin() -> pathlib.Path:
    for version in ("17", "16", "15", "14"):
        p = pathlib.Path(f"/usr/lib/postgresql/{version}/bin")
        if (p / "initdb").exists():
            return p
    found = shutil.which("initdb")
    if not found:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    return pathlib.Path(found).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd: list[str], **kw):
    """Runs a PostgreSQL server binary, as the postgres user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, check=True, **kw)


def to_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, token: str | None, seconds: int, connections: int) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk saw {errors.group(1)} error responses from {url}:\n{out}")
    return {"rps": rps, "p50": to_ms(lat["50"]), "p99": to_ms(lat["99"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ebb", default=str(ROOT / "target/release/ebb"))
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rows", type=int, default=20000)
    args = ap.parse_args()
    ebb = pathlib.Path(args.ebb)
    if not ebb.exists():
        sys.exit(f"{ebb} not found: cargo build --release -p ebb-cli (or pass --ebb)")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")

    work = pathlib.Path(tempfile.mkdtemp(prefix="ebb-api-bench-"))
    os.chmod(work, 0o777)
    pg = pg_bin()
    data = work / "pg"
    port = free_port()
    as_postgres([str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], capture_output=True)
    as_postgres(
        [str(pg / "pg_ctl"), "-D", str(data), "-l", str(work / "pg.log"), "-w", "start",
         "-o", f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c max_connections=200"],
        capture_output=True,
    )
    serve = None
    try:
        url = f"postgres://postgres@127.0.0.1:{port}/postgres"
        project = work / "models"
        shutil.copytree(ROOT / "models", project, ignore=shutil.ignore_patterns(".ebb", "_ebb_models"))
        env = dict(os.environ, EBB_LOG="error")
        token = subprocess.run(
            [str(ebb), "tokens", "create", "-P", str(project), "--state-url", url,
             "--tenant", "acme", "--scope", "admin"],
            check=True, capture_output=True, text=True, env=env,
        ).stdout.strip()
        # Seed: runs and events of two tenants (the migrations ran in `tokens create`).
        n = args.rows
        seed = f"""
            set search_path = ebb_state;
            insert into runs (tenant, sync, kind, trigger, status, planned, accepted, created_at, started_at, finished_at, attempts)
            select t, s, 'sync', 'schedule', 'succeeded', 300, 300, g, g + 10, g + 900, 1
            from generate_series(1, {n}) g,
                 (values ('acme', 'crm_companies'), ('globex', 'other_sync')) v(t, s);
            insert into outbox (tenant, topic, payload, created_at)
            select t, 'run.finished', jsonb_build_object('run_id', g, 'status', 'succeeded', 'accepted', 300), g
            from generate_series(1, {n}) g, (values ('acme'), ('globex')) v(t);
            analyze;
        """
        subprocess.run([str(pg / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-c", seed], check=True, capture_output=True)

        api_port = free_port()
        serve = subprocess.Popen(
            [str(ebb), "serve", "-P", str(project), "--state-url", url, "--listen", f"127.0.0.1:{api_port}",
             "--workers", "1", "--no-scheduler"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        serve.stdout.readline()
        base = f"http://127.0.0.1:{api_port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        routes = [
            ("GET /v1/runs?limit=50", f"{base}/v1/runs?limit=50", token),
            ("GET /v1/runs?sync=...", f"{base}/v1/runs?sync=crm_companies&status=succeeded&limit=50", token),
            ("GET /v1/events?limit=100", f"{base}/v1/events?cursor={n // 2}&limit=100", token),
            ("GET /v1/syncs/{name}", f"{base}/v1/syncs/crm_companies", token),
        ]
        floor = wrk(f"{base}/healthz", None, args.seconds, args.connections)
        report = Report(
            "api",
            params={"rows_per_tenant": n, "connections": args.connections, "seconds": args.seconds,
                    "state_store": "postgres (fsync on)"},
            peer_name="healthz",
        )
        for name, url_, tok in routes:
            r = wrk(url_, tok, args.seconds, args.connections)
            report.row(f"{name} p50", "ms", r["p50"], floor["p50"], "lower")
            report.row(f"{name} p99", "ms", r["p99"], floor["p99"], "lower")
            report.row(f"{name} req/s", "1/s", r["rps"], floor["rps"], "higher")
        report.finish()
    finally:
        if serve:
            serve.terminate()
            serve.wait(timeout=60)
        as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
