"""The ``vidgen`` command: one subcommand per module in this package.

Each subcommand module defines ``register(subparsers)``, which adds its parser
and sets ``func``; heavy libraries are imported only when a command runs, so
``vidgen --help`` answers at once. Every :class:`~vidgen.errors.VidgenError`
becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from typing import Sequence

# Subcommand modules, in the order ``vidgen --help`` lists them.
COMMANDS = ("sample", "story", "score", "eval", "data", "train", "export", "env")

DESCRIPTION = """\
vidgen: text-to-video generation around InternVid and ViCLIP.

Generate videos from text with a latent video diffusion model, score them
with ViCLIP, and prepare InternVid data and training runs."""

EPILOG = """\
examples:
  vidgen sample --prompt "a red circle slides to the left" --out red.mp4
  vidgen sample --prompts-file prompts.txt --out videos/ --steps 30 --seed 7
  vidgen COMMAND --help     options of one command"""


class UsageError(Exception):
    """A command line argparse refuses (a missing argument, ``--fps nan``), from the parser named ``prog``."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors end as every other bad input does (one line, exit status 2) instead of a usage block;
    its subcommands' parsers are of this class too."""

    def error(self, message: str):
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vidgen", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from vidgen import __version__

    parser.add_argument("--version", action="version", version=f"vidgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        importlib.import_module(f"vidgen.cli.{name}").register(sub)
    return parser


def with_default_subcommand(argv: Sequence[str]) -> list[str]:
    """``vidgen CMD ...`` -> ``vidgen CMD DEFAULT ...`` for a command with a default subcommand (``vidgen train
    --config X`` trains the denoiser) when no subcommand (or help) follows the command."""
    argv = list(argv)
    position = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if position is None or argv[position] not in COMMANDS:
        return argv
    module = importlib.import_module(f"vidgen.cli.{argv[position]}")
    default = getattr(module, "DEFAULT_SUBCOMMAND", None)
    rest = argv[position + 1 :]
    if default and not (rest and (rest[0] in module.SUBCOMMANDS or rest[0] in ("-h", "--help"))):
        argv.insert(position + 1, default)
    return argv


def _quiet_libraries(verbose: bool) -> None:
    """Keep the terminal for our own output: library warnings only with --verbose."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.basicConfig(level=logging.WARNING, format="vidgen: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    from vidgen.errors import VidgenError

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(with_default_subcommand(sys.argv[1:] if argv is None else argv))
        # key=value overrides may follow options (`--config a.yaml steps=3`); argparse leaves them over.
        if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as exc:
        print(f"{exc.prog}: error: {exc}", file=sys.stderr)
        return 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _quiet_libraries(args.verbose)
    try:
        if getattr(args, "json", False):
            # stdout carries the one JSON object; whatever else the work prints goes to stderr.
            args.json_out = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except VidgenError as exc:
        print(f"vidgen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vidgen {args.command}: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
