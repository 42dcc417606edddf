"""archspace's vocabulary, in one place: FLOP conventions, metrics and their result columns, evaluator kinds.

Imports nothing heavy (no torch): specs, spaces, the CLI, result tables and plots all take their
words from here. Block kinds and their one-letter codes are registered with the blocks themselves
(``archspace.blocks``).
"""
from __future__ import annotations

from typing import Literal, get_args

Convention = Literal["smt-paper", "fvcore", "full"]
CONVENTIONS: tuple[str, ...] = get_args(Convention)
"""MAC conventions: ``smt-paper`` (Conv/Linear with bias, as SMT and ptflops count), ``fvcore`` (fvcore's
rules, as EfficientMod prints), ``full`` (smt-paper plus attention matmuls and elementwise products)."""

CountedConvention = Literal["smt-paper", "fvcore", "full", "ptflops"]
COUNTED_CONVENTIONS: tuple[str, ...] = get_args(CountedConvention)
"""Conventions a counter can measure on a built model: the analytic ones plus ``ptflops`` (ptflops' own
default count, the number ptflops users know; no analytic formula)."""

Metric = Literal["accuracy", "flops", "params", "latency", "throughput"]
METRICS: tuple[str, ...] = get_args(Metric)

COLUMNS: dict[str, str] = {"params": "mparams", "flops": "gmacs", "latency": "latency_ms", "throughput": "images_per_s",
                           "accuracy": "accuracy"}
"""Result-table column of each metric (units: millions of parameters, GMACs, milliseconds, images/s, top-1 %)."""
VALUE_COLUMNS: tuple[str, ...] = tuple(COLUMNS.values())

LABELS: dict[str, str] = {"mparams": "params (M)", "gmacs": "GMACs", "latency_ms": "latency (ms)",
                          "images_per_s": "throughput (img/s)", "accuracy": "proxy top-1 (%)"}
"""Axis and table labels of the value columns."""

Direction = Literal["maximize", "minimize"]

Proxy = Literal["synflow", "snip", "grad_norm", "naswot", "params", "flops"]
PROXIES: tuple[str, ...] = get_args(Proxy)
EvaluatorKind = Literal["train", "synflow", "snip", "grad_norm", "naswot", "params", "flops"]
EVALUATORS: tuple[str, ...] = get_args(EvaluatorKind)
assert EVALUATORS == ("train", *PROXIES)
