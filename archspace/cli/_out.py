"""What every command shares: one-line usage errors, the argument parser, table and JSON output."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit code 2."""


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that states each option's default, where it has one (not None, not an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS or not action.help:
            return action.help or ""
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and every option's default in ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


def add_format(parser: argparse.ArgumentParser, *extra: str) -> None:
    parser.add_argument("--format", choices=["table", "json", *extra], default="table", help="output format")


def emit(args: argparse.Namespace, data: Any, table: Callable[[Any], str]) -> None:
    """``data`` as JSON with ``--format json``, else the table ``table(data)`` renders."""
    if getattr(args, "format", "table") == "json":
        print(json.dumps(data, indent=2, default=str))
    else:
        print(table(data))


def rows(headers: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    """A plain text table: numbers right-aligned, text left-aligned."""
    cells = [["" if c is None else str(c) for c in r] for r in body]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if c.replace(",", "").replace(".", "").lstrip("+-").isdigit() else c.ljust(w)
                         for c, w in zip(r, widths)).rstrip()

    return "\n".join([fmt(list(headers)), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells])


def say(line: str) -> None:
    """A note or warning for the person at the terminal (stderr: stdout stays the command's result)."""
    print(line, file=sys.stderr, flush=True)
