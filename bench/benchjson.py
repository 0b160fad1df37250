"""The benches' common ``--json`` option: after its tables, a bench prints its figures as
one JSON object on its last line (keys as in its tables, times in seconds), so a script
can compare runs."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--json",
        action="store_true",
        help="print the figures as one JSON object on the last line (times in seconds)",
    )


def emit(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Print ``figures`` as the last line when ``--json`` was given."""
    if getattr(args, "json", False):
        print(json.dumps(figures, sort_keys=True, default=str), flush=True)
