"""The ``archspace`` command: each subcommand parses, calls one library function, prints.

Bad input (archspace's own refusals, pydantic's validation of user data) is one line on stderr and
exit code 2; an error inside torch, numpy & co. is a bug: exit 1 with its traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..spec.errors import SpecError
from ._out import Parser, UsageError

__all__ = ["UsageError", "main", "make_parser", "process_settings"]


def make_parser() -> Parser:
    """The archspace argument parser: every command's options, with their defaults in ``--help``."""
    from .._version import __version__
    from . import device, measure, runs, specs

    p = Parser(prog="archspace", description="Design-space exploration for hybrid SMT/EfficientMod vision networks.")
    p.add_argument("--version", action="version", version=f"archspace {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for module in (specs, measure, device, runs):
        module.register(sub)
    return p


def _user_error(exc: BaseException) -> bool:
    """Bad input: archspace's own refusals (SpecError, UsageError, a ValueError that archspace raised about an
    argument) and pydantic's validation of user data. A ValueError from inside torch, numpy & co. is a bug."""
    if isinstance(exc, (SpecError, UsageError)):
        return True
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    package = Path(__file__).resolve().parents[1]
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(package)


def process_settings() -> dict[str, Optional[str]]:
    """The process settings archspace's commands run under, applied before torch loads (recorded in latency protocols).

    Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, unless the caller set
    it): on a shared machine with few cores, spinning threads steal the time the working threads need.
    Library calls leave the process as the caller set it up.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``archspace`` console script."""
    from ..spec.errors import one_line

    process_settings()
    try:
        args = make_parser().parse_args(argv)
        return args.func(args)
    except (SpecError, UsageError, ValueError) as exc:
        if os.environ.get("ARCHSPACE_DEBUG") or not _user_error(exc):
            raise  # an internal error: exit 1 with the traceback
        print(f"archspace: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        print("archspace: interrupted", file=sys.stderr)
        return 130
