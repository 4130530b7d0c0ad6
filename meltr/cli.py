"""The ``meltr`` command: look at a finished (or running) run without a clone of the repository.

Usage::

    meltr plot RUN_DIR [--out DIR]                  # Figures 3 and 4 as PNGs (needs: pip install meltr[plot])
    meltr summary RUN_DIR [RUN_DIR ...] [--json]    # steps, time, memory, metrics, learned task weights
    meltr export CHECKPOINT OUT.safetensors [--combiner]   # weights only (needs: pip install meltr[export])
    meltr --version

Also ``python -m meltr.cli ...``. Each subcommand is one :class:`Command` entry of :data:`COMMANDS`
(arguments and a ``run`` function returning the exit status), so adding one is a few lines. A run
directory that cannot be read exits with status 2 and a one-line message naming the path; a missing
optional dependency exits with status 1 and says what to install. Neither prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meltr.summary import DEFAULT_WINDOW, RunDirError

__all__ = ["Command", "COMMANDS", "build_parser", "main"]

EXIT_USAGE = 2  # argparse's status for bad arguments; an unreadable run directory is the user's input too


@dataclass(frozen=True)
class Command:
    """One ``meltr`` subcommand.

    Attributes:
        help: One-line description shown by ``meltr --help``.
        add_arguments: Adds the subcommand's arguments to its parser.
        run: Runs it on the parsed arguments; returns the exit status. It may raise
            :class:`meltr.summary.RunDirError` (reported, status 2) or ImportError for a missing
            optional dependency (reported, status 1).
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------ plot


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory containing metrics.jsonl")
    parser.add_argument("--out", metavar="DIR", default=None, help="output directory (default: RUN_DIR/plots)")


def _plot(args: argparse.Namespace) -> int:
    from meltr.plot import plot_run  # lazy: only this subcommand needs the plotting module

    for path in plot_run(args.run_dir, args.out).values():
        print(path)
    return 0


# ------------------------------------------------------------------ summary


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run directories containing metrics.jsonl")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per RUN_DIR, instead of markdown")
    parser.add_argument("--window", type=_positive_int, default=DEFAULT_WINDOW, metavar="N",
                        help=f"average the final task weights over the last N train records (default {DEFAULT_WINDOW})")


def _summary(args: argparse.Namespace) -> int:
    from meltr.summary import summarize_run, to_markdown

    # Read every run before printing anything, so a bad path leaves no partial output.
    summaries = [summarize_run(run_dir, args.window) for run_dir in args.run_dirs]
    sys.stdout.write(json.dumps(summaries, indent=2) + "\n" if args.json else to_markdown(summaries))
    return 0


# ------------------------------------------------------------------ export


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a best.pt or last.pt of a meltr run")
    parser.add_argument("out", metavar="OUT", help="the .safetensors file to write")
    parser.add_argument("--combiner", action="store_true", help="export the combiner (MELTR) instead of the model")


def _export(args: argparse.Namespace) -> int:
    from meltr.checkpoint import CheckpointError, export_safetensors

    try:
        print(export_safetensors(args.checkpoint, args.out, key="combiner" if args.combiner else "model"))
    except (CheckpointError, FileNotFoundError) as err:
        raise RunDirError(str(err)) from err
    return 0


COMMANDS: dict[str, Command] = {
    "plot": Command("plot a run's task weights and MELTR outputs (paper Figures 3 and 4)", _plot_arguments, _plot),
    "summary": Command("summarise runs: steps, time, memory, last/best metrics, final task weights",
                       _summary_arguments, _summary),
    "export": Command("write a checkpoint's weights alone to a safetensors file, loadable into the bare model",
                      _export_arguments, _export),
}
"""Subcommand name to :class:`Command`, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The ``meltr`` argument parser, one subparser per :data:`COMMANDS` entry."""
    from meltr import __version__

    parser = argparse.ArgumentParser(prog="meltr", description="Inspect MELTR training runs (metrics.jsonl).")
    parser.add_argument("--version", action="version", version=f"meltr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``meltr`` command line.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 2 for bad arguments or an unreadable run directory, 1 for a
        missing optional dependency. ``--help`` and ``--version`` print and return 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help, --version (0) and usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_USAGE)
    prog = f"meltr {args.command}"
    try:
        return COMMANDS[args.command].run(args)
    except RunDirError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as err:
        if (err.name or "meltr").split(".")[0] == "meltr":
            raise  # a bug in meltr itself, not a missing optional dependency: keep the traceback
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
