"""``hitl scorecard PROJECT.db --out DIR``: the impact ScoreCard of a project store."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """Price what is unpriced, settle closed periods, and write the ScoreCard; returns the exit code."""
    from .impact import Ledger, ScoreCard
    from .impact.ledger import open_store

    store = open_store(args.store)
    try:
        settings = {k: v for k, v in dict(
            fair_multiple=args.fair_multiple, floor_multiple=args.floor_multiple, split=args.split,
            currency=args.currency, period=args.period, topup_payer=args.topup_payer).items() if v is not None}
        ledger = Ledger(store, args.wages, **settings)
        card = ScoreCard.from_store(store, ledger=ledger, final=args.final, max_tenure_days=args.max_tenure_days,
                                    baseline_answers_per_item=args.baseline)
        paths = card.write(args.out)
        if not args.quiet:
            print(card.summary())
            print("wrote " + ", ".join(str(paths[k]) for k in ("html", "markdown", "json")))
    finally:
        store.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scorecard", help="write the impact ScoreCard (JSON, Markdown, HTML) of a project store",
        description="Price every answer of a project store in its fair-pay ledger, top up anyone below the floor "
                    "over a closed pay period, and write scorecard.json, scorecard.md and scorecard.html.",
    )
    p.add_argument("store", type=Path, help="the project's SQLite file (e.g. hitl-demo/project.db)")
    p.add_argument("--out", type=Path, default=Path("scorecard"), help="output folder (default: scorecard/)")
    p.add_argument("--wages", type=Path, default=None,
                   help="CSV of local minimum wages (country, currency, hourly_wage, source, date, units_per_usd); "
                        "default: the example table shipped with hitl")
    p.add_argument("--fair-multiple", default=None, help="pay as a multiple of the local minimum wage (default 3)")
    p.add_argument("--floor-multiple", default=None, help="lowest effective multiple over a pay period (default 2)")
    p.add_argument("--split", default=None, help="HITer/platform/programme percent of the client price (default 60/35/5)")
    p.add_argument("--currency", default=None, help="settlement currency (default USD)")
    p.add_argument("--period", default=None, choices=("round", "day", "week", "month", "project"),
                   help="pay period over which the floor is checked (default round)")
    p.add_argument("--topup-payer", default=None, choices=("client", "platform"), help="who pays top-ups (default client)")
    p.add_argument("--final", action="store_true", help="the project is over: settle open pay periods too")
    p.add_argument("--max-tenure-days", type=int, default=3 * 365, help="longest stay on the platform (default 1095)")
    p.add_argument("--baseline", type=int, default=3, help="answers per item of the all-human baseline (default 3)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
