"""`wan22 models list`: the served tasks of the models configuration (`WAN22_MODELS`) and the
LoRA adapters a request may pick for each, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from services.models_config import catalogue, load_models
from services.settings import CommonSettings, load


def add_list(actions: argparse._SubParsersAction) -> None:
    listing = actions.add_parser("list", help="served tasks and the LoRA adapters requests may choose")
    listing.add_argument("--models", help="the models TOML (default: WAN22_MODELS)")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(run=run_list)


def run_list(args: argparse.Namespace) -> int:
    path = args.models if args.models is not None else load(CommonSettings).models
    rows = catalogue(load_models(path))
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
        return 0
    for row in rows:
        loras = ", ".join(f"{a['name']} ({a['expert']}, {a['scale']:g})" for a in row["loras"]) or "-"
        print(f"{row['id']:<16} {row['kind']:<5} {','.join(row['sizes']):<28} loras: {loras}")
    return 0
