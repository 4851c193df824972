"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from typing import Any


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (repeatable) and trailing ``key=value`` overrides."""
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE",
        help="YAML config layered over the defaults (repeatable; later files win)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="config overrides applied last, e.g. steps=30 guidance=9",
    )


def flag_overrides(args: argparse.Namespace, fields: dict[str, str]) -> dict[str, Any]:
    """Map the flags the user actually gave (not ``None``) onto config field names.

    Args:
        args: parsed arguments.
        fields: ``{argparse dest: config field}``.
    """
    out = {}
    for dest, name in fields.items():
        value = getattr(args, dest, None)
        if value is not None and value != []:
            out[name] = value
    return out


def merged_overrides(flags: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Flags first, then ``key=value`` strings (which win); nested keys merged."""
    from omegaconf import OmegaConf

    from vidgen.config import parse_overrides

    merged = OmegaConf.merge(OmegaConf.create(flags), OmegaConf.create(parse_overrides(overrides)))
    return OmegaConf.to_container(merged)  # type: ignore[return-value]
