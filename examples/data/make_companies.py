"""Regenerate companies.csv: 12,000 fictional companies, deterministic (seed 2026)."""

import csv
import random
from pathlib import Path

PREFIXES = [
    "Nord",
    "Blue",
    "Quantum",
    "Alpen",
    "Spree",
    "Iron",
    "Solar",
    "Delta",
    "Urban",
    "Green",
    "Bright",
    "Silver",
    "Rapid",
    "Clear",
    "Meridian",
    "Harbor",
    "Atlas",
    "Nova",
]
SUFFIXES = [
    "Labs",
    "Systems",
    "Pay",
    "Logistics",
    "Health",
    "Robotics",
    "Analytics",
    "Energy",
    "Foods",
    "Capital",
    "Works",
    "Cloud",
    "Bio",
    "Mobility",
    "Security",
    "Learning",
]
FORMS = ["GmbH", "AG", "SE", "Ltd", "Inc", "BV", "SAS", "Oy"]
CITIES = [
    ("Berlin", "DE"),
    ("Munich", "DE"),
    ("Hamburg", "DE"),
    ("Vienna", "AT"),
    ("Zurich", "CH"),
    ("Amsterdam", "NL"),
    ("Paris", "FR"),
    ("London", "GB"),
    ("Helsinki", "FI"),
    ("Stockholm", "SE"),
    ("Lisbon", "PT"),
    ("Warsaw", "PL"),
]
INDUSTRIES = [
    "fintech",
    "logistics",
    "healthtech",
    "energy",
    "robotics",
    "foodtech",
    "cybersecurity",
    "edtech",
    "mobility",
    "saas",
    "biotech",
    "proptech",
]


def main() -> None:
    rng = random.Random(2026)
    rows = []
    for i in range(12_000):
        city, country = rng.choice(CITIES)
        name = f"{rng.choice(PREFIXES)}{rng.choice(SUFFIXES)} {rng.choice(FORMS)}"
        rows.append(
            {
                "id": f"co-{i:05d}",
                "name": name,
                "city": city,
                "country": country,
                "industry": rng.choice(INDUSTRIES),
                "founded": rng.randint(1950, 2025),
                "employees": int(rng.lognormvariate(3.5, 1.6)) + 1,
                "revenue_musd": round(rng.lognormvariate(1.5, 1.8), 2),
                "website": f"https://{name.split(maxsplit=1)[0].lower()}-{i}.example",
            }
        )
    path = Path(__file__).with_name("companies.csv")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
