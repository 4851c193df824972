"""``vidgen env``: the versions and places a bug report needs, as ``diffusers-cli env`` prints them."""

from __future__ import annotations

import argparse

from vidgen.cli.common import add_json_arg, emit

HELP = "versions, devices and paths to paste into a bug report"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help=HELP, description="Print vidgen's version, the libraries and devices it runs with, and where models live (for bug reports).")
    add_json_arg(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vidgen.runtime import environment

    report = environment()
    emit(args, report, ["Copy and paste this into your bug report:", "", *(f"- {key}: {value}" for key, value in report.items())])
    return 0
