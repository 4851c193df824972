"""``vidgen env``: the versions and places a bug report needs, as ``diffusers-cli env`` prints them."""

from __future__ import annotations

import argparse

HELP = "versions, devices and paths to paste into a bug report"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help=HELP, description="Print vidgen's version, the libraries and devices it runs with, and where models live (for bug reports).")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the list")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import json

    from vidgen.runtime import environment

    report = environment()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print("Copy and paste this into your bug report:\n")
    for key, value in report.items():
        print(f"- {key}: {value}")
    return 0
