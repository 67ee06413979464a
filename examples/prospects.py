"""A prospecting pipeline: discover companies, enrich and score them in batches, report.

    python examples/prospects.py "fintech in Berlin" [--state prospects.db]

Discover reads examples/data/companies.csv and keeps the companies matching the query
(an industry and/or a city). Enrich starts a batching scope over `companies` (50 at a
time, 4 batches in flight, items keyed by their `id`); inside it, Score and Classify run
as a parallel pair on each batch, and Shortlist ends the scope. A hook on Enrich logs
every committed batch. Summarize runs after the scope, so its tier counts cover every
batch; Report writes a ranked summary. With --state the run is durable: run the same
command again (or after Ctrl-C) and it resumes, loading committed batches instead of
re-running them.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchline import SQLiteStateStore
from batchline.pipeline import (
    BATCH_KEY,
    Agent,
    BatchProgressContext,
    Pipeline,
    ends_batching,
    triggers_batching,
)

DATA = Path(__file__).resolve().parent / "data" / "companies.csv"


class Discover(Agent):
    """Companies matching the query's industry and city words."""

    requires = ("query",)
    provides = ("companies",)

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        words = {word.lower() for word in context["query"].split()}
        with DATA.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        industries = {row["industry"] for row in rows} & words
        cities = {row["city"].lower() for row in rows} & words
        found = [
            row
            for row in rows
            if (not industries or row["industry"] in industries)
            and (not cities or row["city"].lower() in cities)
        ]
        return {"companies": found}


@triggers_batching(chunk_size=50, over="companies", key="id")
class Enrich(Agent):
    """Add derived facts to each company (stands in for an API or LLM call)."""

    requires = ("companies",)
    provides = ("companies",)

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        enriched = []
        for company in context["companies"]:
            employees = int(company["employees"])
            revenue = float(company["revenue_musd"])
            enriched.append(
                {
                    **company,
                    "employees": employees,
                    "revenue_musd": revenue,
                    "age": 2026 - int(company["founded"]),
                    "revenue_per_employee_kusd": round(1000 * revenue / employees, 1),
                }
            )
        return {"companies": enriched}


class Score(Agent):
    """Score each enriched company (one half of a parallel pair inside the scope)."""

    requires = ("companies",)
    provides = ("scores",)

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        scores = {
            c["id"]: round(
                min(100.0, 7 * math.log1p(c["employees"]) + 6 * math.log1p(c["revenue_musd"])),
                1,
            )
            for c in context["companies"]
        }
        return {"scores": scores}


class Classify(Agent):
    """Put each company in a size tier (the other half of the pair, run at the same time)."""

    requires = ("companies",)
    provides = ("tiers",)

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        tiers = {
            c["id"]: "large"
            if c["employees"] >= 500
            else "mid"
            if c["employees"] >= 50
            else "small"
            for c in context["companies"]
        }
        return {"tiers": tiers}


@ends_batching
class Shortlist(Agent):
    """The last agent run per batch: the batch's companies worth a call."""

    requires = ("companies", "scores")
    provides = ("shortlist", "batches")

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        keep = [c["id"] for c in context["companies"] if context["scores"][c["id"]] >= 60]
        return {"shortlist": keep, "batches": [context[BATCH_KEY]["number"]]}


@Enrich.on_batch_complete
def log_batch(progress: BatchProgressContext, results: Mapping[str, Any]) -> None:
    """A hook: it reads the batch's results (read-only) after the batch is committed."""
    print(f"  {progress}: {len(results['shortlist'])} shortlisted", file=sys.stderr)


class Summarize(Agent):
    """Totals over every batch: computed after the scope, from the merged fields."""

    requires = ("tiers", "shortlist")
    provides = ("tier_counts",)

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {"tier_counts": dict(Counter(context["tiers"].values()))}


class Report(Agent):
    """The top prospects as text."""

    requires = ("companies", "scores", "tier_counts")
    provides = ("report",)

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        ranked = sorted(context["companies"], key=lambda c: -context["scores"][c["id"]])
        lines = [f"{len(ranked)} prospects for {context['query']!r}; top 5:"]
        lines += [
            f"  {context['scores'][c['id']]:5.1f}  {c['name']} ({c['city']}, "
            f"{c['employees']} employees)"
            for c in ranked[:5]
        ]
        counts = ", ".join(f"{n} {tier}" for tier, n in sorted(context["tier_counts"].items()))
        lines.append(f"{len(context['shortlist'])} shortlisted; tiers: {counts}")
        return {"report": "\n".join(lines)}


def show_progress(progress: BatchProgressContext) -> None:
    """Print one line per finished batch."""
    print(
        f"  batch {progress.batch_number}/{progress.total_batches}: "
        f"{progress.completed_items}/{progress.total_items} companies ({progress.percentage:.0f}%)",
        file=sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="fintech in Berlin")
    parser.add_argument("--state", type=Path, help="a SQLite file: makes the run resumable")
    args = parser.parse_args()
    store = SQLiteStateStore(args.state) if args.state else None
    pipeline = Pipeline(
        Discover >> Enrich >> (Score | Classify) >> Shortlist >> Summarize >> Report,
        max_concurrency=4,
        progress=show_progress,
        store=store,
        run_id=f"prospects:{args.query}" if store else None,
    )
    result = pipeline.run({"query": args.query})
    print(result.context["report"])
    print(
        f"{result.stats.batches} batches, {result.stats.succeeded} companies enriched, "
        f"{result.stats.resumed} resumed, {len(result.failures)} failed batches"
    )


if __name__ == "__main__":
    main()
