#!/usr/bin/env python3
"""Deterministic data generator for the ebb example project `acme_analytics`.

Acme Analytics is a (fictional) B2B SaaS company. This script writes a small copy of its
warehouse as CSV files: the product database (accounts, users, subscriptions, invoices,
support tickets) and three exports from its go-to-market tools (CRM, billing, support desk)
that describe the same people with real-world noise, plus the ground truth of who is who.

    python3 models/generate.py               # the checked-in data, into models/data/
    python3 models/generate.py --mutate      # the quickstart's "change some rows" step
    python3 models/generate.py --out /tmp/x  # somewhere else

Python 3.11+, standard library only. The output depends on nothing but the seed: no wall
clock, no hash randomisation, no locale. Running it twice gives byte-identical files.

CSV dialect: UTF-8 (no BOM), a header row, RFC 4180 quoting (only when needed, quotes
doubled), `\\n` line endings, an empty field is NULL, dates `2026-01-31`, timestamps
`2026-01-31T12:34:56Z` (UTC), money with exactly two decimals.

`--mutate` regenerates the base data in memory and then applies MUTATION (documented
below and in README.md), so it is idempotent and does not read the files already there.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime as dt
import hashlib
import random
import sys
import unicodedata
from pathlib import Path

SEED = 20261031
AS_OF = dt.datetime(2026, 10, 31, 18, 0, 0)  # the data is a snapshot taken at this moment (UTC)
HISTORY_START = dt.datetime(2024, 11, 1)  # invoices and tickets start here (24 months)
FIRST_SIGNUP = dt.datetime(2022, 3, 1)
N_ACCOUNTS = 300
N_TICKETS = 2500

# What `--mutate` does. Exact counts (tests check them). With the default seed the two
# deleted accounts are 1121 and 1278, which takes 4 users, 2 subscriptions, 9 invoices and
# 4 support tickets with them; the new accounts are 1301-1305 (see README.md).
MUTATION = {
    "update_accounts": 10,  # 7 upgrades + 3 downgrades of an active paid subscription
    "upgrades": 7,
    "downgrades": 3,
    "add_accounts": 5,  # each with 1 trialing subscription and 2 users (owner + member)
    "users_per_new_account": 2,
    "delete_accounts": 2,  # churned accounts, deleted with their users/subscriptions/invoices/tickets
}

TABLES = {
    "accounts": ["account_id", "name", "domain", "industry", "region", "country",
                 "employee_count", "created_at", "plan"],
    "users": ["user_id", "account_id", "email", "full_name", "phone", "role", "created_at",
              "last_seen_at"],
    "subscriptions": ["subscription_id", "account_id", "plan", "status", "mrr_usd",
                      "started_at", "canceled_at"],
    "invoices": ["invoice_id", "account_id", "subscription_id", "issued_at", "due_at",
                 "paid_at", "amount_usd", "currency", "status"],
    "support_tickets": ["ticket_id", "account_id", "requester_email", "requester_name",
                        "priority", "status", "created_at", "resolved_at", "csat"],
    "crm_contacts": ["contact_id", "email", "full_name", "phone", "company_domain",
                     "updated_at"],
    "billing_customers": ["customer_id", "billing_email", "name", "phone",
                          "stripe_customer_id", "updated_at"],
    "support_requesters": ["requester_id", "email", "name", "phone", "updated_at"],
    "identity_truth": ["source", "record_id", "person_id"],
}


# --------------------------------------------------------------------------------------
# Randomness: one independent stream per phase, each derived from the seed with SHA-256.
# Only Random.random() is used (stable across Python versions for a given seed).


class Rng:
    def __init__(self, seed: int, stream: str) -> None:
        digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
        self._r = random.Random(int.from_bytes(digest[:8], "big"))

    def random(self) -> float:
        return self._r.random()

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def randint(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        return lo + int(self._r.random() * (hi - lo + 1))

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self._r.random()

    def choice(self, seq):
        return seq[int(self._r.random() * len(seq))]

    def weighted(self, pairs):
        """pairs: [(value, weight), ...]"""
        total = sum(w for _, w in pairs)
        x = self._r.random() * total
        for value, weight in pairs:
            x -= weight
            if x < 0:
                return value
        return pairs[-1][0]

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = int(self._r.random() * (i + 1))
            items[i], items[j] = items[j], items[i]

    def between(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        span = int((end - start).total_seconds())
        if span <= 0:
            return start
        return start + dt.timedelta(seconds=int(self._r.random() * span))

    def token(self, n: int, alphabet: str) -> str:
        return "".join(alphabet[int(self._r.random() * len(alphabet))] for _ in range(n))


# --------------------------------------------------------------------------------------
# Formatting


def ts(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def day(value: dt.datetime | dt.date | None) -> str | None:
    return value.strftime("%Y-%m-%d") if value is not None else None


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def at_midnight(d: dt.datetime) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day)


def add_months(d: dt.datetime, months: int, anchor_day: int) -> dt.datetime:
    """Same time of day, `months` later, on `anchor_day` clamped to the month's length."""
    year = d.year + (d.month - 1 + months) // 12
    month = (d.month - 1 + months) % 12 + 1
    next_first = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = (next_first - dt.timedelta(days=1)).day
    return d.replace(year=year, month=month, day=min(anchor_day, last))


DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)

# --------------------------------------------------------------------------------------
# Reference data

# code: region, weight, tld, billing currency, name pools (pool, weight), legal suffixes
COUNTRIES = {
    "US": ("NA", 40, ".com", "USD", [("en", 80), ("es", 10), ("in", 10)],
           [", Inc.", " Inc.", ", LLC", " LLC", "", "", ""]),
    "CA": ("NA", 10, ".ca", "CAD", [("en", 80), ("fr", 20)], [" Inc.", " Ltd.", "", ""]),
    "GB": ("EMEA", 8, ".co.uk", "GBP", [("en", 85), ("in", 15)], [" Ltd", " Ltd", " plc", ""]),
    "DE": ("EMEA", 7, ".de", "EUR", [("de", 100)], [" GmbH", " GmbH", " AG", ""]),
    "FR": ("EMEA", 4, ".fr", "EUR", [("fr", 100)], [" SAS", " SA", ""]),
    "NL": ("EMEA", 3, ".nl", "EUR", [("nl", 100)], [" B.V.", ""]),
    "SE": ("EMEA", 2, ".se", "EUR", [("nordic", 100)], [" AB", ""]),
    "DK": ("EMEA", 1, ".dk", "EUR", [("nordic", 100)], [" ApS", " A/S"]),
    "PL": ("EMEA", 2, ".pl", "EUR", [("pl", 100)], [" sp. z o.o.", " S.A."]),
    "ES": ("EMEA", 1, ".es", "EUR", [("es", 100)], [" S.L.", " S.A."]),
    "AU": ("APAC", 4, ".com.au", "AUD", [("en", 85), ("in", 15)], [" Pty Ltd", ""]),
    "JP": ("APAC", 2, ".jp", "USD", [("jp", 100)], [" K.K.", ""]),
    "SG": ("APAC", 3, ".sg", "USD", [("in", 60), ("en", 40)], [" Pte. Ltd.", ""]),
    "IN": ("APAC", 3, ".in", "USD", [("in", 100)], [" Pvt. Ltd.", ""]),
    "BR": ("LATAM", 4, ".com.br", "BRL", [("pt", 100)], [" Ltda.", " S.A."]),
    "MX": ("LATAM", 4, ".com.mx", "USD", [("es", 100)], [" S.A. de C.V.", ""]),
    "AR": ("LATAM", 1, ".com.ar", "USD", [("es", 100)], [" S.A.", ""]),
    "CL": ("LATAM", 0.5, ".cl", "USD", [("es", 100)], [" SpA", ""]),
    "CO": ("LATAM", 0.5, ".co", "USD", [("es", 100)], [" S.A.S.", ""]),
}

NAMES = {
    "en": (
        ["James", "Robert", "William", "Elizabeth", "Katherine", "Michael", "Jennifer",
         "Alexander", "Jonathan", "Margaret", "Thomas", "Daniel", "Christopher", "Richard",
         "Sarah", "Emily", "Olivia", "Noah", "Liam", "Ava", "Ethan", "Mia", "Benjamin",
         "Charlotte", "Samuel", "Grace", "Patricia", "Joseph", "Nicholas", "Rebecca",
         "Hannah", "Lucas", "Chloe", "Isaac", "Aoife", "Siobhán", "Ngozi", "Renée", "Zoë",
         "Marcus", "Tyler", "Megan", "Laura", "David", "Andrew", "Jessica", "Brian", "Amy"],
        ["Smith", "Johnson", "Brown", "Taylor", "Anderson", "Jackson", "White", "Harris",
         "Martin", "Thompson", "Clark", "Lewis", "Walker", "Hall", "Young", "King", "Wright",
         "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell",
         "Roberts", "Carter", "Phillips", "O'Brien", "O'Neill", "Okafor", "Nguyen", "Chen",
         "Kim", "McAllister", "Fitzgerald", "Murphy", "Reyes", "Brooks", "Foster", "Hughes",
         "Price", "Bennett", "Wood", "Sullivan", "Russell", "Coleman", "Henderson"],
    ),
    "de": (
        ["Jürgen", "Zoë", "Lena", "Lukas", "Anna", "Felix", "Sophie", "Matthias", "Jörg",
         "Katrin", "Maximilian", "Sabine", "Tobias", "Julia", "Stefan", "Lea", "Björn",
         "Ute", "Niklas", "Mareike"],
        ["Müller", "Schmidt", "Schäfer", "Weiß", "Becker", "Köhler", "Hoffmann", "Wagner",
         "Fischer", "Krüger", "Schröder", "Neumann", "Zimmermann", "Braun", "Hofmann",
         "Lehmann", "Groß", "Jäger"],
    ),
    "fr": (
        ["François", "Chloé", "Renée", "Étienne", "Amélie", "Théo", "Léa", "Hélène",
         "Jérôme", "Camille", "Mathieu", "Céline", "Antoine", "Manon", "Benoît", "Inès"],
        ["Dubois", "Lefèvre", "Moreau", "Girard", "Bérenger", "Rousseau", "Lambert",
         "Fontaine", "Mercier", "Chevalier", "Faure", "Gauthier", "Leroy", "Bonnet"],
    ),
    "nl": (
        ["Daan", "Sanne", "Joost", "Fleur", "Bram", "Lieke", "Thijs", "Femke", "Ruben", "Anouk"],
        ["de Vries", "van Dijk", "Jansen", "Bakker", "Visser", "Smit", "de Jong",
         "van den Berg", "Mulder", "Bos"],
    ),
    "nordic": (
        ["Björn", "Åsa", "Søren", "Märta", "Håkon", "Freja", "Mikkel", "Ingrid", "Lars",
         "Sigrid", "Oskar", "Astrid", "Mads", "Linnéa"],
        ["Ångström", "Nørgaard", "Lindqvist", "Sjöberg", "Østergaard", "Johansson",
         "Andersson", "Nilsson", "Kjær", "Sørensen", "Bergström", "Holm"],
    ),
    "pl": (
        ["Łukasz", "Małgorzata", "Paweł", "Zofia", "Wojciech", "Agnieszka", "Krzysztof",
         "Katarzyna", "Michał", "Joanna", "Tomasz", "Ewa"],
        ["Kowalski", "Wiśniewski", "Nowak", "Zieliński", "Wójcik", "Dąbrowski",
         "Lewandowski", "Kamiński", "Szymański", "Woźniak"],
    ),
    "es": (
        ["José", "María", "Lucía", "Alejandro", "Sofía", "Javier", "Inés", "Andrés",
         "Carmen", "Diego", "Valentina", "Pablo", "Martín", "Camila", "Francisco", "Elena"],
        ["Núñez", "García", "Peña", "Rodríguez", "Martínez", "Fernández", "Gutiérrez",
         "Ibáñez", "López", "Sánchez", "Ramírez", "Torres", "Jiménez", "Ortiz", "Muñoz"],
    ),
    "pt": (
        ["João", "Ana", "Luísa", "Thiago", "Gabriela", "Rafael", "Beatriz", "Leonardo",
         "Mariana", "Gustavo", "Letícia", "Vinícius"],
        ["Silva", "Santos", "Oliveira", "Gonçalves", "Araújo", "Simões", "Pereira",
         "Costa", "Ribeiro", "Carvalho", "Conceição", "Magalhães"],
    ),
    "jp": (
        ["Hiroshi", "Yuki", "Haruto", "Aiko", "Sota", "Yui", "Kenji", "Sakura", "Takumi", "Mei"],
        ["Nakamura", "Sato", "Tanaka", "Suzuki", "Ito", "Watanabe", "Yamamoto", "Kobayashi",
         "Kato", "Yoshida"],
    ),
    "in": (
        ["Priya", "Arjun", "Wei", "Ananya", "Rohan", "Mei", "Vikram", "Aditi", "Rahul",
         "Kavya", "Siddharth", "Neha", "Jun", "Ishaan"],
        ["Patel", "Sharma", "Tan", "Lim", "Iyer", "Reddy", "Gupta", "Nair", "Menon", "Wong",
         "Krishnan", "Chatterjee", "Goh", "Rao"],
    ),
}

NICKNAMES = {
    "Alexander": ["Alex", "Xander"], "Jonathan": ["Jon", "Jonny"], "Katherine": ["Kate", "Katie"],
    "Elizabeth": ["Liz", "Beth"], "Robert": ["Bob", "Rob"], "William": ["Bill", "Will"],
    "Michael": ["Mike"], "Jennifer": ["Jen", "Jenny"], "Margaret": ["Maggie", "Peggy"],
    "Thomas": ["Tom"], "Daniel": ["Dan", "Danny"], "Christopher": ["Chris"],
    "Richard": ["Rick", "Rich"], "Patricia": ["Pat", "Trish"], "Joseph": ["Joe"],
    "Nicholas": ["Nick"], "Rebecca": ["Becky", "Bec"], "Samuel": ["Sam"], "Benjamin": ["Ben"],
    "James": ["Jim", "Jamie"], "Andrew": ["Andy", "Drew"], "David": ["Dave"],
    "Jessica": ["Jess"], "Francisco": ["Paco", "Pancho"], "José": ["Pepe"],
    "Alejandro": ["Álex"], "Małgorzata": ["Gosia"], "Wojciech": ["Wojtek"],
    "Krzysztof": ["Krzyś"], "Katarzyna": ["Kasia"], "Gabriela": ["Gabi"], "Sofía": ["Sofi"],
    "Hiroshi": ["Hiro"], "Maximilian": ["Max"], "Matthias": ["Matze"], "Tobias": ["Tobi"],
    "Siddharth": ["Sid"], "Vikram": ["Vik"], "Leonardo": ["Leo"], "Valentina": ["Vale"],
    "Mareike": ["Rike"], "Benoît": ["Ben"], "Étienne": ["Tienne"],
}

# first names that take a generational suffix ("Robert Nelson, Jr.") now and then
NAME_SUFFIX_OK = {"James", "Robert", "William", "Michael", "Thomas", "Daniel", "Christopher",
                  "Richard", "Joseph", "Nicholas", "Samuel", "Benjamin", "Jonathan", "David",
                  "Andrew", "Brian", "Marcus", "Tyler", "Alexander"}

COMPANY_A = ["Northwind", "Bluefin", "Cobalt", "Harbor", "Juniper", "Kestrel", "Lumen",
             "Maple", "Nimbus", "Orchid", "Pinecrest", "Quarry", "Redwood", "Summit", "Tidal",
             "Umber", "Vantage", "Willow", "Zephyr", "Alder", "Brightline", "Cedar",
             "Driftwood", "Ember", "Fjord", "Granite", "Helix", "Ironwood", "Jasper",
             "Keystone", "Lattice", "Meridian", "Northstar", "Oakridge", "Polaris", "Quill",
             "Riverbend", "Sable", "Tundra", "Upland", "Vector", "Wavecrest", "Yarrow",
             "Zenith", "Atlas", "Beacon", "Copperleaf", "Evergreen", "Foxglove", "Saltmarsh"]
COMPANY_B = ["Analytics", "Logistics", "Health", "Labs", "Systems", "Foods", "Robotics",
             "Capital", "Media", "Energy", "Bio", "Software", "Retail", "Freight", "Studios",
             "Networks", "Dynamics", "Works", "Partners", "Outfitters", "Learning", "Clinics"]
INDUSTRY_OF_B = {
    "Analytics": "Software", "Logistics": "Logistics", "Health": "Healthcare",
    "Labs": "Software", "Systems": "Software", "Foods": "Retail", "Robotics": "Manufacturing",
    "Capital": "Fintech", "Media": "Media", "Energy": "Energy", "Bio": "Healthcare",
    "Software": "Software", "Retail": "Retail", "Freight": "Logistics", "Studios": "Media",
    "Networks": "Software", "Dynamics": "Manufacturing", "Works": "Manufacturing",
    "Partners": "Professional Services", "Outfitters": "Retail", "Learning": "Education",
    "Clinics": "Healthcare",
}

# Accounts that always exist (they make unicode, commas and quotes certain to appear).
SPECIAL_ACCOUNTS = [
    ("Müller & Söhne GmbH", "mueller-soehne.de", "DE", "Manufacturing", ("Zoë", "Müller")),
    ("Núñez Distribución S.L.", "nunez-distribucion.es", "ES", "Logistics", ("José", "Núñez")),
    ("Łukasiewicz Robotics sp. z o.o.", "lukasiewicz-robotics.pl", "PL", "Manufacturing",
     ("Łukasz", "Wiśniewski")),
    ('The "Good Bean" Coffee Co.', "goodbean.coffee", "US", "Retail", ("Siobhán", "O'Brien")),
    ("Smith, Jones & Partners LLP", "smithjones.co.uk", "GB", "Professional Services",
     ("Margaret", "Smith")),
    ("Fromagerie Sévigné SAS", "fromagerie-sevigne.fr", "FR", "Retail", ("François", "Lefèvre")),
    ("Nørgaard Søfart ApS", "norgaard-sofart.dk", "DK", "Logistics", ("Søren", "Nørgaard")),
    ("Åkesson Möbler AB", "akesson-mobler.se", "SE", "Retail", ("Åsa", "Åkesson")),
    ("Araújo & Gonçalves Ltda.", "araujogoncalves.com.br", "BR", "Fintech", ("João", "Araújo")),
    ("Kettle & Crumb, LLC", "kettleandcrumb.com", "US", "Retail", ("Robert", "Nelson")),
]

FREEMAIL = ["gmail.com", "gmail.com", "gmail.com", "outlook.com", "yahoo.com", "icloud.com",
            "proton.me", "hotmail.com"]

CONSULTANCIES = ["bluepeak-consulting.com", "northgate-it.co.uk", "clearpath-advisors.com",
                 "brightforge.io", "datawise-partners.de"]
ACCOUNTING_FIRMS = ["ledgerly-accounting.com", "kpx-bookkeeping.com", "tallyhouse.co.uk",
                    "numbersmith.com.au"]

PLANS = ["free", "starter", "pro", "enterprise"]
PRICE_CENTS = {"free": 0, "starter": 1200, "pro": 3900, "enterprise": 6500}  # per seat/month
SEATS = {"free": (1, 3), "starter": (2, 25), "pro": (5, 150), "enterprise": (40, 500)}
UPGRADE = {"free": "starter", "starter": "pro", "pro": "enterprise"}
DOWNGRADE = {"enterprise": "pro", "pro": "starter", "starter": "free"}

# --------------------------------------------------------------------------------------
# Text helpers

DE_TRANSLIT = {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
FOLD_EXTRA = {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "đ": "d",
              "ß": "ss", "œ": "oe", "Œ": "Oe"}


def ascii_fold(text: str, german: bool = False) -> str:
    if german:
        text = "".join(DE_TRANSLIT.get(c, c) for c in text)
    text = "".join(FOLD_EXTRA.get(c, c) for c in text)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def slug(text: str, german: bool = False) -> str:
    return "".join(c for c in ascii_fold(text, german).lower() if c.isalnum())


def typo(rng: Rng, word: str) -> str:
    """Swap two adjacent letters, drop one, or double one (never the first letter)."""
    if len(word) < 4:
        return word
    i = rng.randint(1, len(word) - 2)
    kind = rng.randint(0, 2)
    if kind == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


# --------------------------------------------------------------------------------------
# Phones: (country calling code, digit groups, trunk prefix). Mostly fictional ranges
# (NANP 555-01xx, Ofcom drama numbers, ACMA 02 5550, ...).


class Phones:
    NANP_AREAS = {"US": ["415", "212", "646", "312", "617", "206", "512", "303", "404",
                         "305", "213", "720", "971", "614", "919", "650", "773", "503"],
                  "CA": ["416", "604", "514", "403", "613"]}

    def __init__(self, rng: Rng) -> None:
        self.rng = rng
        self.used: set[tuple] = set()

    def new(self, country: str) -> tuple:
        for _ in range(200):
            p = self._draw(country)
            if p not in self.used:
                self.used.add(p)
                return p
        raise RuntimeError(f"phone numbers exhausted for {country}")

    def _draw(self, c: str) -> tuple:
        r = self.rng
        d = lambda n: "".join(str(r.randint(0, 9)) for _ in range(n))  # noqa: E731
        if c in ("US", "CA"):
            return ("1", (r.choice(self.NANP_AREAS[c]), "555", "01" + d(2)), "")
        table = {
            "GB": lambda: ("44", ("20", "7946", "0" + d(3)), "0") if r.chance(0.5)
            else ("44", ("7700", "900", d(3)), "0"),
            "DE": lambda: ("49", ("30", "23125", d(3)), "0"),
            "FR": lambda: ("33", ("1", "99", "00", d(2), d(2)), "0"),
            "NL": lambda: ("31", ("20", "555", "0" + d(3)), "0"),
            "SE": lambda: ("46", ("8", "555", d(3), d(2)), "0"),
            "DK": lambda: ("45", ("32", "55", d(2), d(2)), ""),
            "PL": lambda: ("48", ("22", "555", d(2), d(2)), ""),
            "ES": lambda: ("34", ("91", "555", d(2), d(2)), ""),
            "AU": lambda: ("61", ("2", "5550", d(4)), "0") if r.chance(0.6)
            else ("61", ("491", "570", d(3)), "0"),
            "JP": lambda: ("81", ("3", "5555", d(4)), "0"),
            "SG": lambda: ("65", ("6555", d(4)), ""),
            "IN": lambda: ("91", ("22", "5555", d(4)), "0"),
            "BR": lambda: ("55", ("11", "5555", d(4)), "0"),
            "MX": lambda: ("52", ("55", "5555", d(4)), ""),
            "AR": lambda: ("54", ("11", "5555", d(4)), "0"),
            "CL": lambda: ("56", ("2", "2555", d(4)), ""),
            "CO": lambda: ("57", ("601", "555", d(4)), ""),
        }
        return table[c]()


def fmt_phone(p: tuple, style: str) -> str:
    cc, groups, trunk = p
    nsn = "".join(groups)
    if cc == "1":
        a, b, c = groups
        return {
            "canonical": f"+1 {a}-{b}-{c}",
            "e164": f"+1{nsn}",
            "digits": nsn,
            "paren": f"({a}) {b}-{c}",
            "intl_paren": f"+1 ({a}) {b}-{c}",
            "dashed": f"{a}-{b}-{c}",
            "dotted": f"{a}.{b}.{c}",
            "one_dash": f"1-{a}-{b}-{c}",
        }[style]
    spaced = " ".join(groups)
    return {
        "canonical": f"+{cc} {spaced}",
        "e164": f"+{cc}{nsn}",
        "digits": f"00{cc}{nsn}",
        "paren": f"+{cc} ({trunk or '0'}){spaced}" if trunk else f"+{cc} {spaced}",
        "intl_paren": f"({cc}) {spaced}",
        "dashed": f"+{cc}-" + "-".join(groups),
        "dotted": f"+{cc}." + ".".join(groups),
        "one_dash": f"{trunk}{spaced}",  # national format: ambiguous without the country
    }[style]


PHONE_STYLES = [("canonical", 25), ("e164", 15), ("digits", 15), ("paren", 12),
                ("intl_paren", 10), ("dashed", 10), ("dotted", 8), ("one_dash", 5)]


# --------------------------------------------------------------------------------------
# People


class Person:
    """A real human. person_id = user_id for product users, 90001+ for everyone else."""

    def __init__(self, first: str, last: str, country: str, domain: str | None,
                 email: str, phone: tuple | None, personal_email: str) -> None:
        self.person_id = 0
        self.first = first
        self.last = last
        self.country = country
        self.domain = domain
        self.email = email
        self.phone = phone
        self.personal_email = personal_email
        self.suffix = ""  # ", Jr." for a few
        self.role = ""  # for people who are not product users: consultant, finance, executive

    @property
    def full_name(self) -> str:
        return f"{self.first} {self.last}{self.suffix}"

    @property
    def german(self) -> bool:
        return self.country in ("DE", "AT", "CH")


def pick_name(rng: Rng, country: str) -> tuple[str, str]:
    pool = rng.weighted(COUNTRIES[country][4])
    firsts, lasts = NAMES[pool]
    return rng.choice(firsts), rng.choice(lasts)


def local_part(first: str, last: str, fmt: str, german: bool) -> str:
    f, l_ = slug(first, german), slug(last, german)
    return {"first.last": f"{f}.{l_}", "flast": f"{f[0]}{l_}", "first": f,
            "firstl": f"{f}{l_[0]}", "first_last": f"{f}_{l_}"}[fmt]


def personal_email(rng: Rng, first: str, last: str, german: bool) -> str:
    f, l_ = slug(first, german), slug(last, german)
    style = rng.randint(0, 3)
    local = [f"{f}.{l_}{rng.randint(70, 99)}", f"{f}{l_}", f"{f[0]}{l_}{rng.randint(1, 999)}",
             f"{l_}.{f}"][style]
    return f"{local}@{rng.choice(FREEMAIL)}"


# --------------------------------------------------------------------------------------
# The product database


class Account:
    def __init__(self) -> None:
        self.account_id = 0
        self.name = ""
        self.domain = ""
        self.industry = ""
        self.country = ""
        self.employee_count: int | None = None
        self.created_at = AS_OF
        self.profile = "steady"  # thriving | steady | struggling (hidden; drives the signals)
        self.email_format = "first.last"
        self.owner_name: tuple[str, str] | None = None
        self.main_line: tuple | None = None
        self.subs: list[dict] = []
        self.users: list[dict] = []
        self.extra_people: list[Person] = []  # finance contacts, consultants (not users)

    @property
    def region(self) -> str:
        return COUNTRIES[self.country][0]

    @property
    def current(self) -> dict:
        return self.subs[-1]

    @property
    def end(self) -> dt.datetime:
        """When the account stopped being a customer (or AS_OF)."""
        cur = self.current
        return cur["canceled_dt"] if cur["status"] == "canceled" else AS_OF


def seats_and_mrr(rng: Rng, plan: str, employees: int | None) -> tuple[int, int]:
    lo, hi = SEATS[plan]
    emp = employees if employees is not None else 40
    seats = max(lo, min(hi, int(emp * rng.uniform(0.04, 0.35))))
    if plan == "starter":
        discount = 0
    elif plan == "pro":
        discount = rng.choice([0, 0, 0, 5, 10, 15])
    elif plan == "enterprise":
        discount = rng.choice([10, 15, 20, 25, 30])
    else:
        discount = 0
    return seats, seats * PRICE_CENTS[plan] * (100 - discount) // 100


def build_accounts(seed: int) -> list[Account]:
    rng = Rng(seed, "accounts")
    country_weights = [(code, info[1]) for code, info in COUNTRIES.items()]
    names_used: set[str] = set()
    domains_used: set[str] = set()
    accounts = []
    span = AS_OF - dt.timedelta(days=5) - FIRST_SIGNUP
    for i in range(N_ACCOUNTS):
        a = Account()
        if i < len(SPECIAL_ACCOUNTS):
            a.name, a.domain, a.country, a.industry, a.owner_name = SPECIAL_ACCOUNTS[i]
            a.email_format = "first.last"
        else:
            a.country = rng.weighted(country_weights)
            while True:
                word_a, word_b = rng.choice(COMPANY_A), rng.choice(COMPANY_B)
                base = f"{word_a} {word_b}"
                if base not in names_used:
                    break
            tld = COUNTRIES[a.country][2]
            if INDUSTRY_OF_B[word_b] == "Software" and rng.chance(0.4):
                tld = rng.choice([".io", ".ai", ".dev"])
            domain = slug(word_a) + ("" if rng.chance(0.5) else slug(word_b)) + tld
            if domain in domains_used:
                domain = slug(word_a) + slug(word_b) + tld
            if domain in domains_used:
                domain = slug(word_a) + "-" + slug(word_b) + tld
            a.name = base + rng.choice(COUNTRIES[a.country][5])
            a.domain = domain
            a.industry = INDUSTRY_OF_B[word_b]
            a.email_format = rng.weighted([("first.last", 60), ("flast", 20), ("first", 10),
                                           ("firstl", 6), ("first_last", 4)])
        names_used.add(a.name if i < len(SPECIAL_ACCOUNTS) else base)
        domains_used.add(a.domain)
        a.employee_count = None if rng.chance(0.03) else int(10 ** rng.uniform(0.9, 3.9))
        a.created_at = FIRST_SIGNUP + span * (rng.random() ** 0.75)
        a.created_at = a.created_at.replace(microsecond=0)
        a.profile = rng.weighted([("thriving", 50), ("steady", 35), ("struggling", 15)])
        accounts.append(a)
    accounts.sort(key=lambda x: (x.created_at, x.domain))
    for n, a in enumerate(accounts):
        a.account_id = 1001 + n
    return accounts


def build_subscriptions(seed: int, accounts: list[Account]) -> None:
    rng = Rng(seed, "subscriptions")
    for a in accounts:
        c = a.created_at
        age = AS_OF - c
        big = (a.employee_count or 40) >= 400
        first_plan = rng.weighted([("free", 35), ("starter", 30), ("pro", 25),
                                   ("enterprise", 25 if big else 4)])
        segments: list[list] = []  # [plan, start, end|None]
        if first_plan == "free":
            segments.append(["free", c, None])
            if age > 30 * DAY and rng.chance(0.55):
                t = rng.between(c + 14 * DAY, min(AS_OF - 3 * DAY, c + 300 * DAY))
                segments[-1][2] = t
                plan = rng.weighted([("starter", 60), ("pro", 35), ("enterprise", 5)])
                segments.append([plan, t, None])
        else:
            segments.append([first_plan, c, None])
        last = segments[-1]
        if last[0] != "free" and AS_OF - last[1] > 120 * DAY and rng.chance(0.30):
            t = rng.between(last[1] + 60 * DAY, AS_OF - 10 * DAY)
            up = rng.chance(0.75) and last[0] in UPGRADE
            new_plan = UPGRADE[last[0]] if up else DOWNGRADE[last[0]]
            last[2] = t
            segments.append([new_plan, t, None])
        last = segments[-1]
        churn_p = {"thriving": 0.03, "steady": 0.12, "struggling": 0.45}[a.profile]
        if last[0] == "free":
            churn_p = 0.08
        status = "active"
        canceled = None
        if AS_OF - last[1] > 50 * DAY and rng.chance(churn_p):
            canceled = rng.between(last[1] + 45 * DAY, AS_OF - DAY)
            status = "canceled"
        elif last[0] != "free" and AS_OF - last[1] < 30 * DAY:
            status = "trialing"  # 30-day trial of a paid plan, not invoiced yet
        elif last[0] != "free" and rng.chance({"thriving": 0.0, "steady": 0.04,
                                               "struggling": 0.25}[a.profile]):
            status = "past_due"
        last[2] = canceled
        for k, (plan, start, end) in enumerate(segments):
            is_last = k == len(segments) - 1
            seats, mrr = seats_and_mrr(rng, plan, a.employee_count)
            a.subs.append({
                "plan": plan,
                "status": status if is_last else "canceled",
                "mrr_cents": mrr,
                "seats": seats,
                "started_dt": start,
                "canceled_dt": end,
                "currency": COUNTRIES[a.country][3],
                "net_days": 30 if plan == "enterprise" else 14,
            })
    # ids in order of start
    everything = [(s["started_dt"], a.account_id, s) for a in accounts for s in a.subs]
    everything.sort(key=lambda x: (x[0], x[1]))
    for n, (_, _, s) in enumerate(everything):
        s["subscription_id"] = 5001 + n


def build_users(seed: int, accounts: list[Account], phones: Phones) -> None:
    rng = Rng(seed, "users")
    all_users = []
    for a in accounts:
        cur = a.current
        if cur["plan"] == "free":
            n = rng.randint(1, 3)
        else:
            n = max(1, min(20, int(cur["seats"] * rng.uniform(0.06, 0.17))))
        used_locals: set[str] = set()
        end = a.end
        if a.country != "JP" and rng.chance(0.4):
            a.main_line = phones.new(a.country)
        for k in range(n):
            if k == 0 and a.owner_name:
                first, last = a.owner_name
            else:
                first, last = pick_name(rng, a.country)
            german = a.country == "DE"
            local = local_part(first, last, a.email_format, german)
            base, suffix_n = local, 2
            while local in used_locals:
                local = f"{base}{suffix_n}"
                suffix_n += 1
            used_locals.add(local)
            phone = phones.new(a.country) if rng.chance(0.7) else None
            p = Person(first, last, a.country, a.domain, f"{local}@{a.domain}", phone,
                       personal_email(rng, first, last, german))
            if a.country in ("US", "GB") and first in NAME_SUFFIX_OK and rng.chance(0.02):
                p.suffix = rng.choice([", Jr.", ", Sr.", " III"])
            if k == 0:
                created = a.created_at + dt.timedelta(seconds=rng.randint(30, 900))
                role = "owner"
            else:
                created = rng.between(a.created_at + HOUR, max(a.created_at + 2 * HOUR, end))
                role = rng.weighted([("admin", 12), ("member", 62), ("viewer", 20),
                                     ("billing", 6 if cur["plan"] != "free" else 0)])
            if role != "owner" and rng.chance(0.07):
                last_seen = None  # invited, never logged in
            else:
                lo, hi = {"thriving": (0, 12), "steady": (0, 45), "struggling": (3, 150)}[a.profile]
                if rng.chance(0.15):
                    lo, hi = 30, 300  # dormant user
                last_seen = end - dt.timedelta(seconds=int(rng.uniform(lo, hi) * 86400))
                if last_seen < created:
                    last_seen = created + dt.timedelta(seconds=rng.randint(60, 7200))
                if last_seen > AS_OF:
                    last_seen = AS_OF - dt.timedelta(seconds=rng.randint(60, 3600))
            u = {"account": a, "person": p, "role": role, "created_dt": created,
                 "last_seen_dt": last_seen, "activity": rng.uniform(0.2, 2.0)}
            a.users.append(u)
            all_users.append(u)
    all_users.sort(key=lambda u: (u["created_dt"], u["account"].account_id, u["person"].email))
    for n, u in enumerate(all_users):
        u["user_id"] = 10001 + n
        u["person"].person_id = u["user_id"]
    for a in accounts:
        a.users.sort(key=lambda u: u["user_id"])


def build_invoices(seed: int, accounts: list[Account]) -> list[dict]:
    rng = Rng(seed, "invoices")
    invoices = []
    for a in accounts:
        for s in a.subs:
            if s["plan"] == "free" or s["status"] == "trialing":
                continue
            start = s["started_dt"]
            stop = s["canceled_dt"] or AS_OF
            issue_time = dt.timedelta(hours=rng.randint(0, 6), minutes=rng.randint(0, 59),
                                      seconds=rng.randint(0, 59))
            first_issue = at_midnight(start) + issue_time
            months = []
            k = 0
            while True:
                t = add_months(first_issue, k, first_issue.day)
                if t > stop or t > AS_OF:
                    break
                if t >= HISTORY_START:
                    months.append(t)
                k += 1
            for idx, t in enumerate(months):
                amount = s["mrr_cents"]
                if s["plan"] in ("pro", "enterprise") and rng.chance(0.15):
                    amount += amount * rng.randint(3, 25) // 100  # usage overage
                remaining = len(months) - idx  # 1 = the last invoice of this subscription
                age = AS_OF - t
                due = at_midnight(t) + s["net_days"] * DAY
                paid = None
                if s["status"] == "past_due" and remaining <= 2:
                    status = "open"
                elif (s["status"] == "canceled" and a.profile == "struggling" and remaining <= 2
                      and s is a.current and rng.chance(0.5)):
                    status = "uncollectible"
                elif age < 20 * DAY and rng.chance(0.5):
                    status = "open"
                elif rng.chance(0.012):
                    status = "void"
                else:
                    status = "paid"
                    lag = rng.uniform(0.01, 25 if s["plan"] == "enterprise" else 12)
                    paid = t + dt.timedelta(seconds=int(lag * 86400))
                    if paid > AS_OF:
                        status, paid = "open", None
                invoices.append({
                    "account_id": a.account_id, "subscription_id": s["subscription_id"],
                    "issued_dt": t, "due": due, "paid_dt": paid, "amount_cents": amount,
                    "currency": s["currency"], "status": status,
                })
    invoices.sort(key=lambda i: (i["issued_dt"], i["account_id"], i["subscription_id"]))
    for n, inv in enumerate(invoices):
        inv["invoice_id"] = 700001 + n
    return invoices


# --------------------------------------------------------------------------------------
# Noise for the tool exports


def name_variant(rng: Rng, p: Person, weights: dict) -> str | None:
    kind = rng.weighted(list(weights.items()))
    first, last = p.first, p.last
    if kind == "missing":
        return None
    if kind == "nickname" and first in NICKNAMES:
        return f"{rng.choice(NICKNAMES[first])} {last}"
    if kind == "quoted_nickname" and first in NICKNAMES:
        return f'{first} "{rng.choice(NICKNAMES[first])}" {last}'
    if kind == "ascii" and ascii_fold(p.full_name) != p.full_name:
        return ascii_fold(p.full_name, p.german)
    if kind == "upper":
        return p.full_name.upper()
    if kind == "lower":
        return p.full_name.lower()
    if kind == "last_first":
        return f"{last}, {first}"
    if kind == "typo":
        return f"{first} {typo(rng, last)}"
    if kind == "initial":
        return f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
    if kind == "first_only":
        return first
    if kind == "spaces":
        return f" {first}  {last} "
    return p.full_name


def email_variant(rng: Rng, p: Person, weights: dict) -> str | None:
    kind = rng.weighted(list(weights.items()))
    if kind == "missing":
        return None
    if kind == "personal" or (p.email is None):
        return p.personal_email
    local, domain = p.email.split("@")
    if kind == "case":
        return ".".join(part[:1].upper() + part[1:] for part in local.split(".")) + "@" + \
            domain[:1].upper() + domain[1:]
    if kind == "upper":
        return p.email.upper()
    if kind == "typo":
        return typo(rng, local) + "@" + domain
    if kind == "plus":
        return f"{local}+{rng.choice(['billing', 'invoices', 'finance'])}@{domain}"
    if kind == "alias":
        return f"{slug(p.first, p.german)[0]}{slug(p.last, p.german)}@{domain}"
    return p.email


def phone_variant(rng: Rng, p: Person, present: float, account: Account | None) -> str | None:
    if account is not None and account.main_line and rng.chance(0.08):
        return fmt_phone(account.main_line, rng.weighted(PHONE_STYLES))  # the office line
    if p.phone is None or not rng.chance(present):
        return None
    styles = PHONE_STYLES if p.phone[0] == "1" else [(s, w) for s, w in PHONE_STYLES
                                                      if s != "one_dash"] + [("one_dash", 2)]
    text = fmt_phone(p.phone, rng.weighted(styles))
    if rng.chance(0.02):
        text += rng.choice([" ext. 204", " x12", " ext 3"])
    return text


# --------------------------------------------------------------------------------------
# Support desk: tickets and the requesters who filed them


def build_support(seed: int, accounts: list[Account], people_next_id: list[int],
                  phones: Phones) -> tuple[list[dict], list[dict]]:
    rng = Rng(seed, "support")
    # a few consultants file tickets on behalf of their clients (not product users)
    paid = [a for a in accounts if a.current["plan"] != "free"]
    for n in range(15):
        a = paid[int(rng.random() * len(paid))]
        first, last = pick_name(rng, "US" if n % 3 else "GB")
        domain = CONSULTANCIES[n % len(CONSULTANCIES)]
        german = domain.endswith(".de")
        p = Person(first, last, "US", domain,
                   f"{local_part(first, last, 'first.last', german)}@{domain}",
                   phones.new("US") if rng.chance(0.5) else None,
                   personal_email(rng, first, last, german))
        p.person_id = people_next_id[0]
        people_next_id[0] += 1
        p.role = "consultant"
        a.extra_people.append(p)

    # accounts weighted by size, ticket appetite and how long they were customers in window
    weights = []
    for a in accounts:
        lo = max(a.created_at, HISTORY_START)
        hi = a.end
        days = max(0.0, (hi - lo).total_seconds() / 86400)
        appetite = {"thriving": 0.8, "steady": 1.0, "struggling": 2.2}[a.profile]
        weights.append(len(a.users) ** 0.8 * days * appetite)
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)

    records: dict[tuple, dict] = {}  # (person_id, email) -> requester record
    second_email: dict[int, str] = {}
    tickets = []
    while len(tickets) < N_TICKETS:
        a = accounts[bisect.bisect_right(cumulative, rng.random() * total)]
        created = rng.between(max(a.created_at + HOUR, HISTORY_START), a.end)
        candidates = [(u["person"], u["activity"] * {"owner": 3, "admin": 3, "member": 2,
                                                      "billing": 1, "viewer": 0.5}[u["role"]])
                      for u in a.users if u["created_dt"] <= created]
        consultants = [p for p in a.extra_people if p.role == "consultant"]
        if consultants and rng.chance(0.08):
            person = rng.choice(consultants)
        elif candidates:
            person = rng.weighted(candidates)
        else:
            continue
        # which address did they write from?
        if person.person_id not in second_email:
            second_email[person.person_id] = (
                person.personal_email if rng.chance(0.035) else "")
        email = person.email
        if second_email[person.person_id] and rng.chance(0.4):
            email = second_email[person.person_id]
        key = (person.person_id, email)
        rec = records.get(key)
        if rec is None:
            if email == person.email and rng.chance(0.06):
                email = email_variant(rng, person, {"case": 1})  # typed with capitals
            rec = {
                "person": person,
                "email": email,
                "name": name_variant(rng, person, {
                    "full": 70, "first_only": 9, "lower": 5, "nickname": 5, "ascii": 4,
                    "quoted_nickname": 2, "last_first": 2, "upper": 1, "spaces": 2}),
                "phone": phone_variant(rng, person, 0.15, None),
                "first_dt": created,
                "updated_dt": created,
                "account": a,
            }
            if rec["name"] is None or rec["name"].strip() == "":
                rec["name"] = person.full_name
            records[key] = rec
        rec["updated_dt"] = max(rec["updated_dt"], created)
        rec["first_dt"] = min(rec["first_dt"], created)
        age = AS_OF - created
        priority = rng.weighted([("low", 30), ("normal", 45), ("high", 18), ("urgent", 7)]
                                if a.profile != "struggling" else
                                [("low", 20), ("normal", 40), ("high", 26), ("urgent", 14)])
        if age < 2 * DAY:
            status = rng.weighted([("new", 50), ("open", 40), ("pending", 10)])
        elif age < 14 * DAY:
            status = rng.weighted([("open", 30), ("pending", 20), ("solved", 38), ("closed", 12)])
        else:
            stale = 0.12 if a.profile == "struggling" else 0.01
            status = rng.weighted([("open", stale * 0.7), ("pending", stale * 0.3),
                                   ("solved", 0.17), ("closed", 0.83 - stale)])
        resolved = None
        csat = None
        if status in ("solved", "closed"):
            hours = {"urgent": (0.5, 24), "high": (2, 72), "normal": (4, 120),
                     "low": (12, 240)}[priority]
            resolved = created + dt.timedelta(seconds=int(rng.uniform(*hours) * 3600))
            if resolved > AS_OF:
                status, resolved = "open", None
            elif rng.chance(0.45):
                csat = rng.weighted([(5, 55), (4, 30), (3, 8), (2, 4), (1, 3)]
                                    if a.profile != "struggling" else
                                    [(5, 22), (4, 24), (3, 20), (2, 17), (1, 17)])
        tickets.append({"account_id": a.account_id, "record": rec, "priority": priority,
                        "status": status, "created_dt": created, "resolved_dt": resolved,
                        "csat": csat})
    tickets.sort(key=lambda t: (t["created_dt"], t["account_id"]))
    for n, t in enumerate(tickets):
        t["ticket_id"] = 90001 + n
    # true duplicates inside the desk: a few requesters were created twice (merge missed)
    recs = sorted(records.values(), key=lambda r: (r["first_dt"], r["person"].person_id, r["email"]))
    dupes = []
    for r in recs:
        if rng.chance(0.012):
            d = dict(r)
            d["email"] = email_variant(rng, r["person"], {"case": 2, "upper": 1, "typo": 1})
            d["name"] = name_variant(rng, r["person"], {"full": 2, "nickname": 1, "lower": 1})
            d["first_dt"] = rng.between(r["first_dt"], AS_OF)
            d["updated_dt"] = d["first_dt"]
            dupes.append(d)
    recs.extend(dupes)
    recs.sort(key=lambda r: (r["first_dt"], r["person"].person_id))
    for n, r in enumerate(recs):
        r["requester_id"] = 8800001 + n
    return tickets, recs


# --------------------------------------------------------------------------------------
# CRM and billing exports


def build_crm(seed: int, accounts: list[Account], people_next_id: list[int],
              phones: Phones) -> list[dict]:
    rng = Rng(seed, "crm")
    entries: list[tuple[Person, Account | None, dt.datetime]] = []
    for a in accounts:
        for u in a.users:
            p_in = {"owner": 0.95, "admin": 0.9, "billing": 0.8, "member": 0.6,
                    "viewer": 0.45}[u["role"]]
            if rng.chance(p_in):
                entries.append((u["person"], a, u["created_dt"]))
        for p in a.extra_people:
            if rng.chance(0.5 if p.role == "finance" else 0.3):
                entries.append((p, a, a.created_at))
        # executives and champions who never logged in to the product
        if a.current["plan"] in ("pro", "enterprise") and rng.chance(0.2):
            first, last = pick_name(rng, a.country)
            german = a.country == "DE"
            p = Person(first, last, a.country, a.domain,
                       f"{local_part(first, last, a.email_format, german)}@{a.domain}",
                       phones.new(a.country) if rng.chance(0.6) else None,
                       personal_email(rng, first, last, german))
            if any(u["person"].email == p.email for u in a.users):
                p.email = f"{slug(first, german)}.{slug(last, german)}.exec@{a.domain}"
            p.person_id = people_next_id[0]
            people_next_id[0] += 1
            p.role = "executive"
            a.extra_people.append(p)
            entries.append((p, a, a.created_at))
    # prospects: companies that are not customers yet
    for n in range(24):
        country = rng.weighted([(c, info[1]) for c, info in COUNTRIES.items()])
        word_a, word_b = rng.choice(COMPANY_A), rng.choice(COMPANY_B)
        domain = f"{slug(word_a)}{slug(word_b)}{COUNTRIES[country][2]}"
        if any(a.domain == domain for a in accounts):
            domain = f"{slug(word_a)}{slug(word_b)}hq{COUNTRIES[country][2]}"
        for _ in range(rng.randint(1, 4)):
            first, last = pick_name(rng, country)
            german = country == "DE"
            p = Person(first, last, country, domain,
                       f"{local_part(first, last, 'first.last', german)}@{domain}",
                       phones.new(country) if rng.chance(0.7) else None,
                       personal_email(rng, first, last, german))
            p.person_id = people_next_id[0]
            people_next_id[0] += 1
            entries.append((p, None, rng.between(dt.datetime(2024, 1, 1), AS_OF - 5 * DAY)))

    rows = []
    for p, a, since in entries:
        copies = 2 if rng.chance(0.02) else 1  # imported twice (event list, old CSV import)
        for copy in range(copies):
            if copy == 0:
                email = email_variant(rng, p, {"work": 80, "case": 8, "personal": 4, "typo": 2,
                                               "upper": 1, "missing": 5})
                name = name_variant(rng, p, {"full": 78, "nickname": 5, "ascii": 5, "typo": 2,
                                            "initial": 3, "quoted_nickname": 2, "upper": 2,
                                            "lower": 1, "last_first": 1, "missing": 1})
            else:
                email = email_variant(rng, p, {"personal": 3, "case": 2, "upper": 1, "work": 1})
                name = name_variant(rng, p, {"nickname": 3, "full": 2, "lower": 1, "ascii": 1})
            dom = a.domain if a is not None else p.domain
            dom_kind = rng.weighted([("plain", 85), ("www", 5), ("upper", 3), ("missing", 7)])
            company_domain = {"plain": dom, "www": f"www.{dom}", "upper": dom.upper(),
                              "missing": None}[dom_kind]
            rows.append({"person": p, "email": email, "name": name,
                         "phone": phone_variant(rng, p, 0.75, a),
                         "company_domain": company_domain,
                         "created_dt": rng.between(since, max(since, AS_OF - DAY)),
                         })
    for r in rows:
        r["updated_dt"] = rng.between(r["created_dt"], AS_OF)
    rows.sort(key=lambda r: (r["created_dt"], r["person"].person_id))
    next_id = 30400001
    for r in rows:
        next_id += rng.randint(1, 40)  # HubSpot-like ids: increasing, not dense
        r["contact_id"] = next_id
    return rows


def build_billing(seed: int, accounts: list[Account], people_next_id: list[int],
                  phones: Phones, invoices: list[dict]) -> list[dict]:
    rng = Rng(seed, "billing")
    last_invoice: dict[int, dt.datetime] = {}
    for inv in invoices:
        last_invoice[inv["account_id"]] = inv["issued_dt"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    rows = []
    for a in accounts:
        paid_subs = [s for s in a.subs if s["plan"] != "free"]
        if not paid_subs:
            continue
        since = paid_subs[0]["started_dt"]
        billing_users = [u for u in a.users if u["role"] == "billing"]
        owner = a.users[0]
        contacts: list[Person] = []
        if billing_users:
            contacts.append(billing_users[0]["person"])
        elif rng.chance(0.12):
            # an outside bookkeeper pays the bills (not a product user)
            first, last = pick_name(rng, a.country)
            firm = rng.choice(ACCOUNTING_FIRMS)
            p = Person(first, last, a.country, firm, f"{slug(first)}.{slug(last)}@{firm}",
                       phones.new(a.country) if rng.chance(0.5) else None,
                       personal_email(rng, first, last, False))
            p.person_id = people_next_id[0]
            people_next_id[0] += 1
            p.role = "finance"
            a.extra_people.append(p)
            contacts.append(p)
        else:
            contacts.append(owner["person"])
        admins = [u for u in a.users if u["role"] == "admin" and u["person"] not in contacts]
        if admins and rng.chance(0.06):
            contacts.append(admins[0]["person"])
        for p in contacts:
            stripe = "cus_" + rng.token(14, alphabet) if rng.chance(0.96) else None
            base = {
                "person": p,
                "billing_email": email_variant(rng, p, {"work": 62, "plus": 10, "case": 8,
                                                        "alias": 10, "personal": 5, "upper": 2,
                                                        "missing": 3}),
                "name": a.name if rng.chance(0.14) else name_variant(
                    rng, p, {"full": 80, "upper": 5, "nickname": 5, "ascii": 4,
                             "last_first": 3, "initial": 3}),
                "phone": phone_variant(rng, p, 0.4, a),
                "stripe_customer_id": stripe,
                "created_dt": rng.between(since, since + 2 * DAY),
                "updated_dt": min(AS_OF, last_invoice.get(a.account_id, since)
                                  + dt.timedelta(seconds=rng.randint(60, 86400))),
            }
            rows.append(base)
            if rng.chance(0.03):
                # re-synced from an old billing system: same Stripe customer, new record
                dup = dict(base)
                dup["billing_email"] = email_variant(rng, p, {"case": 2, "upper": 1, "work": 1})
                dup["name"] = name_variant(rng, p, {"upper": 1, "ascii": 1, "full": 1})
                dup["phone"] = phone_variant(rng, p, 0.5, a)
                dup["created_dt"] = rng.between(base["created_dt"], AS_OF - DAY)
                dup["updated_dt"] = rng.between(dup["created_dt"], AS_OF)
                rows.append(dup)
    rows.sort(key=lambda r: (r["created_dt"], r["person"].person_id))
    for n, r in enumerate(rows):
        r["customer_id"] = 60001 + n
    return rows


# --------------------------------------------------------------------------------------
# Assembly


def build(seed: int) -> dict:
    phones = Phones(Rng(seed, "phones"))
    accounts = build_accounts(seed)
    build_subscriptions(seed, accounts)
    build_users(seed, accounts, phones)
    invoices = build_invoices(seed, accounts)
    people_next_id = [90001]
    tickets, requesters = build_support(seed, accounts, people_next_id, phones)
    billing = build_billing(seed, accounts, people_next_id, phones, invoices)
    crm = build_crm(seed, accounts, people_next_id, phones)
    return {"accounts": accounts, "invoices": invoices, "tickets": tickets,
            "requesters": requesters, "billing": billing, "crm": crm}


def mutate(seed: int, world: dict) -> dict:
    """The quickstart's "change some rows" step. Returns a summary of what changed."""
    rng = Rng(seed, "mutate")
    accounts: list[Account] = world["accounts"]
    # new ids continue after the largest ids ever issued (deleted ids are never reused)
    next_account = max(a.account_id for a in accounts) + 1
    next_sub = max(s["subscription_id"] for a in accounts for s in a.subs) + 1
    next_user = max(u["user_id"] for a in accounts for u in a.users) + 1

    # 1. delete 2 churned accounts (a GDPR erasure request), with everything they own
    churned = [a for a in accounts if a.current["status"] == "canceled"
               and a.current["plan"] != "free"]
    deleted = []
    while len(deleted) < MUTATION["delete_accounts"]:
        a = rng.choice(churned)
        if a not in deleted:
            deleted.append(a)
    deleted_ids = {a.account_id for a in deleted}
    removed = {
        "accounts": len(deleted),
        "users": sum(len(a.users) for a in deleted),
        "subscriptions": sum(len(a.subs) for a in deleted),
        "invoices": sum(1 for i in world["invoices"] if i["account_id"] in deleted_ids),
        "support_tickets": sum(1 for t in world["tickets"] if t["account_id"] in deleted_ids),
    }
    world["accounts"] = accounts = [a for a in accounts if a.account_id not in deleted_ids]
    world["invoices"] = [i for i in world["invoices"] if i["account_id"] not in deleted_ids]
    world["tickets"] = [t for t in world["tickets"] if t["account_id"] not in deleted_ids]

    # 2. change plan and MRR of 10 accounts with an active paid subscription, in place
    eligible = [a for a in accounts if a.current["status"] == "active"
                and a.current["plan"] in ("starter", "pro", "enterprise")]
    upgradable = [a for a in eligible if a.current["plan"] in ("starter", "pro")]
    downgradable = [a for a in eligible if a.current["plan"] in ("pro", "enterprise")]
    changed: list[Account] = []
    for pool, count, direction in ((upgradable, MUTATION["upgrades"], "up"),
                                   (downgradable, MUTATION["downgrades"], "down")):
        picked = 0
        while picked < count:
            a = rng.choice(pool)
            if a in changed:
                continue
            s = a.current
            new_plan = UPGRADE[s["plan"]] if direction == "up" else DOWNGRADE[s["plan"]]
            _, mrr = seats_and_mrr(rng, new_plan, a.employee_count)
            if mrr == s["mrr_cents"]:
                mrr += 100
            s["plan"], s["mrr_cents"] = new_plan, mrr
            changed.append(a)
            picked += 1

    # 3. five new sign-ups today, each on a trial with an owner and one teammate
    new_names = [("Quokka Freight", "quokkafreight.com.au", "AU", "Logistics"),
                 ("Brioche & Bytes, Inc.", "briochebytes.com", "US", "Retail"),
                 ("Grünwald Analytik GmbH", "gruenwald-analytik.de", "DE", "Software"),
                 ("Marigold Clinics", "marigoldclinics.in", "IN", "Healthcare"),
                 ("Tierra Verde Energía S.A.", "tierraverde.com.mx", "MX", "Energy")]
    assert len(new_names) == MUTATION["add_accounts"]
    added = []
    for n, (name, domain, country, industry) in enumerate(new_names):
        a = Account()
        a.account_id = next_account + n
        a.name, a.domain, a.country, a.industry = name, domain, country, industry
        a.employee_count = int(10 ** rng.uniform(1.2, 3.0))
        a.created_at = dt.datetime(2026, 10, 31, 9 + n, rng.randint(0, 59), rng.randint(0, 59))
        plan = "pro" if n % 2 == 0 else "starter"
        seats, mrr = seats_and_mrr(rng, plan, a.employee_count)
        a.subs.append({"plan": plan, "status": "trialing", "mrr_cents": mrr, "seats": seats,
                       "started_dt": a.created_at, "canceled_dt": None,
                       "currency": COUNTRIES[country][3], "net_days": 14,
                       "subscription_id": next_sub + n})
        for k in range(MUTATION["users_per_new_account"]):
            first, last = pick_name(rng, country)
            p = Person(first, last, country, domain,
                       f"{local_part(first, last, 'first.last', False)}@{domain}",
                       None, personal_email(rng, first, last, False))
            created = a.created_at + dt.timedelta(minutes=2 + 30 * k)
            u = {"account": a, "person": p, "role": "owner" if k == 0 else "member",
                 "created_dt": created, "last_seen_dt": created + dt.timedelta(minutes=20),
                 "activity": 1.0, "user_id": next_user}
            p.person_id = next_user
            next_user += 1
            a.users.append(u)
        accounts.append(a)
        added.append(a)
    assert len(changed) == MUTATION["update_accounts"]
    return {
        "deleted_account_ids": sorted(deleted_ids),
        "updated_account_ids": sorted(a.account_id for a in changed),
        "added_account_ids": [a.account_id for a in added],
        "removed_rows": removed,
        "added_rows": {"accounts": len(added), "subscriptions": len(added),
                       "users": len(added) * MUTATION["users_per_new_account"]},
        "updated_rows": {"accounts": len(changed), "subscriptions": len(changed)},
    }


def rows_of(world: dict) -> dict[str, list[list]]:
    accounts: list[Account] = world["accounts"]
    out: dict[str, list[list]] = {name: [] for name in TABLES}
    for a in sorted(accounts, key=lambda x: x.account_id):
        out["accounts"].append([a.account_id, a.name, a.domain, a.industry, a.region, a.country,
                                a.employee_count, ts(a.created_at), a.current["plan"]])
    users = sorted((u for a in accounts for u in a.users), key=lambda u: u["user_id"])
    for u in users:
        p = u["person"]
        out["users"].append([u["user_id"], u["account"].account_id, p.email, p.full_name,
                             fmt_phone(p.phone, "canonical") if p.phone else None, u["role"],
                             ts(u["created_dt"]), ts(u["last_seen_dt"])])
    subs = sorted(((a, s) for a in accounts for s in a.subs), key=lambda x: x[1]["subscription_id"])
    for a, s in subs:
        out["subscriptions"].append([s["subscription_id"], a.account_id, s["plan"], s["status"],
                                     money(s["mrr_cents"]), day(s["started_dt"]),
                                     day(s["canceled_dt"])])
    for i in world["invoices"]:
        out["invoices"].append([i["invoice_id"], i["account_id"], i["subscription_id"],
                                ts(i["issued_dt"]), day(i["due"]), ts(i["paid_dt"]),
                                money(i["amount_cents"]), i["currency"], i["status"]])
    for t in world["tickets"]:
        r = t["record"]
        out["support_tickets"].append([t["ticket_id"], t["account_id"], r["email"], r["name"],
                                       t["priority"], t["status"], ts(t["created_dt"]),
                                       ts(t["resolved_dt"]), t["csat"]])
    truth = []
    for r in world["crm"]:
        out["crm_contacts"].append([r["contact_id"], r["email"], r["name"], r["phone"],
                                    r["company_domain"], ts(r["updated_dt"])])
        truth.append(["crm_contacts", r["contact_id"], r["person"].person_id])
    for r in world["billing"]:
        out["billing_customers"].append([r["customer_id"], r["billing_email"], r["name"],
                                         r["phone"], r["stripe_customer_id"],
                                         ts(r["updated_dt"])])
        truth.append(["billing_customers", r["customer_id"], r["person"].person_id])
    for r in world["requesters"]:
        out["support_requesters"].append([r["requester_id"], r["email"], r["name"], r["phone"],
                                          ts(r["updated_dt"])])
        truth.append(["support_requesters", r["requester_id"], r["person"].person_id])
    out["identity_truth"] = truth
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data",
                        help="output folder (default: data/ beside this script)")
    parser.add_argument("--mutate", action="store_true",
                        help="apply the quickstart's change step: update 10 accounts, add 5, "
                             "delete 2 (see README.md)")
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)

    world = build(args.seed)
    summary = mutate(args.seed, world) if args.mutate else None
    tables = rows_of(world)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, header in TABLES.items():
        write_csv(args.out / f"{name}.csv", header, tables[name])
    if not args.quiet:
        total = 0
        for name in TABLES:
            size = (args.out / f"{name}.csv").stat().st_size
            total += size
            print(f"{name + '.csv':24} {len(tables[name]):6} rows {size:9} bytes")
        print(f"{'total':24} {'':6}      {total:9} bytes -> {args.out}")
        if summary:
            print("mutation:")
            for key, value in summary.items():
                print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
