"""Ablations: an explicit set of specs (a paper table), evaluated over seeds by the search machinery, tabulated.

An ablation file lists rows; each row names a network (an SMT variant with the paper's knobs, a preset
with per-kind block edits, or an inline spec) and the paper's printed columns. ``run_ablation``
turns it into a brute-force space over (row, seed) and runs it with the resumable Optuna engine.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import field_validator, Field, ValidationError, model_validator

from ..spec._base import PosInt, Spec
from ..spec.errors import SpecError, first_error
from ..spec.io import load_spec, read_yaml, spec_from_dict, spec_to_dict
from ..spec.net import NetSpec
from ..spec.official import smt_variant
from .space import Evaluator, Measure, Objective, Param, Sampler, SearchBudget, Space


class Row(Spec):
    """One row of a paper table: a label, the network, the paper's printed values."""

    label: str
    smt: Optional[dict[str, Any]] = None
    preset: Optional[str] = None
    edit: dict[str, dict[str, Any]] = Field(default_factory=dict)
    spec: Optional[dict[str, Any]] = None
    paper: dict[str, Optional[float]] = Field(default_factory=dict)
    reproduces_paper: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> "Row":
        given = [k for k in ("smt", "preset", "spec") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of smt (variant of SMT-T), preset (+ edit) or spec")
        if self.edit and self.preset is None:
            raise ValueError("edit: block edits apply to a preset")
        return self

    def network(self) -> NetSpec:
        """The row's spec (1000 classes, as in the paper)."""
        if self.smt is not None:
            return smt_variant(self.label, **self.smt)
        if self.spec is not None:
            return spec_from_dict(self.spec, self.label)
        data = spec_to_dict(load_spec(self.preset))
        for stage in data["stages"]:
            for block in stage["blocks"]:
                block.update(self.edit.get(block["kind"], {}))
        data["name"] = self.label
        return spec_from_dict(data, f"{self.label}.edit")


class Ablation(Spec):
    """An ablation file."""

    name: str
    title: str
    paper_metric: str = "ImageNet-1K top-1 (%)"
    flops_convention: Literal["smt-paper", "fvcore"] = "smt-paper"
    rows: list[Row] = Field(min_length=2)
    evaluator: Evaluator = Field(default_factory=Evaluator)
    measure: Measure = Field(default_factory=Measure)
    seeds: PosInt = 2
    num_classes: PosInt = 10
    note: str = ""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        from .rundir import check_name

        return check_name(v)

    @model_validator(mode="after")
    def _labels(self) -> "Ablation":
        labels = [r.label for r in self.rows]
        if len(set(labels)) != len(labels):
            raise ValueError("rows: labels must be unique")
        return self


def load_ablation(path: Union[str, Path]) -> Ablation:
    """Load an ablation file; one-line SpecError naming the field on any problem."""
    data = read_yaml(path)
    try:
        ab = Ablation.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {first_error(exc)}") from None
    for i, row in enumerate(ab.rows):
        try:
            row.network()
        except SpecError as exc:
            raise SpecError(f"{path}: rows[{i}] ({row.label}): {exc}") from None
    return ab


def as_space(ab: Ablation) -> Space:
    """The brute-force space over (row, seed) that evaluates the ablation."""
    variants = {}
    for row in ab.rows:
        data = spec_to_dict(row.network())
        data["num_classes"] = ab.num_classes
        variants[row.label] = data
    labels = [r.label for r in ab.rows]
    return Space(
        name=f"ablation_{ab.name}", base=variants[labels[0]], variants=variants,
        params=[Param(name="row", path="@variant", choices=labels),
                Param(name="seed", path="@seed", choices=list(range(ab.seeds)))],
        objectives=[Objective(metric="accuracy", direction="maximize")],
        evaluator=ab.evaluator, measure=ab.measure, sampler=Sampler(kind="grid"),
        budget=SearchBudget(trials=len(labels) * ab.seeds), enqueue_base=False, num_classes=ab.num_classes,
        description=ab.title,
    )


def rank_correlation(a: list[float], b: list[float]) -> dict[str, Optional[float]]:
    """Kendall tau-b and Spearman rho between two lists (None when undefined)."""
    from scipy.stats import kendalltau, spearmanr

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 3:
        return {"kendall_tau": None, "spearman": None, "n": len(pairs)}
    xs, ys = zip(*pairs)
    tau = kendalltau(xs, ys).statistic
    rho = spearmanr(xs, ys).statistic
    clean = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)
    return {"kendall_tau": clean(tau), "spearman": clean(rho), "n": len(pairs)}


def seed_bootstrap_tau(seeds: list[list[float]], paper: list[Optional[float]], n: int = 1000,
                       seed: int = 0) -> dict[str, Optional[float]]:
    """5th-95th percentile of Kendall tau against the paper when each row's accuracy is one of its seeds, drawn at random.

    The interval says how far the measured order moves with the seed noise alone: a tau whose
    interval reaches 0 or below is not distinguishable from no agreement with the paper.
    """
    import random

    from scipy.stats import kendalltau

    rows = [(s, p) for s, p in zip(seeds, paper) if s and p is not None]
    if len(rows) < 3 or all(len(s) < 2 for s, _ in rows):
        return {"tau_lo90": None, "tau_hi90": None}
    rng = random.Random(seed)
    taus = []
    for _ in range(n):
        t = kendalltau([rng.choice(s) for s, _ in rows], [p for _, p in rows]).statistic
        if t == t:
            taus.append(float(t))
    if not taus:
        return {"tau_lo90": None, "tau_hi90": None}
    taus.sort()
    return {"tau_lo90": round(taus[int(0.05 * (len(taus) - 1))], 3), "tau_hi90": round(taus[int(0.95 * (len(taus) - 1))], 3)}


def measure_rows(ab: Ablation, repeats: Optional[int] = None) -> dict[str, Any]:
    """Latency records of every row (1000 classes), repeats interleaved across rows so noise hits them alike.

    On the CPU (with ``measure.calibrate``) the rows are also calibrated against one reference
    measured here, so the absolute numbers stay comparable with a rerun of the table.
    """
    from ..measure.latency import apply_process_settings, load_or_calibrate, measure_latencies
    from ..nn.build import build

    apply_process_settings()
    m = ab.measure
    models = {row.label: build(row.network()).eval() for row in ab.rows}
    calibration = load_or_calibrate(m) if m.calibrate else None
    return measure_latencies(models, m.latency_settings().updated(repeats=repeats or m.repeats), calibration=calibration)


def ablation_table(ab: Ablation, rows: list[dict], latency: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Per-row results: paper-protocol params and FLOPs (1000 classes, 224), latency, proxy top-1 over seeds, paper columns."""
    from statistics import mean, pstdev

    from ..measure.complexity import complexity

    out_rows = []
    for row in ab.rows:
        c = complexity(row.network(), 224, num_classes=1000)
        mine = [r for r in rows if r.get("verdict") == "complete" and json.loads(r["params"]).get("row") == row.label]
        acc = [float(r["accuracy"]) for r in mine if r.get("accuracy") is not None]
        lat = [float(r["latency_ms"]) for r in mine if r.get("latency_ms") is not None]
        if latency and row.label in latency:
            lat = [latency[row.label].median_ms]
        out_rows.append({
            "label": row.label, "params": c["params"], "params_M": round(c["params"] / 1e6, 2),
            "gmacs_smt_paper": round(c["smt-paper"] / 1e9, 3), "gmacs_fvcore": round(c["fvcore"] / 1e9, 3),
            "latency_ms": round(sorted(lat)[len(lat) // 2], 2) if lat else None,
            "images_per_s": round(1000.0 / sorted(lat)[len(lat) // 2], 2) if lat else None,
            "top1_mean": round(mean(acc), 2) if acc else None, "top1_std": round(pstdev(acc), 2) if len(acc) > 1 else None,
            "top1_seeds": [round(a, 2) for a in acc],
            "seeds": len(acc), "paper_params_M": row.paper.get("params_M"), "paper_gflops": row.paper.get("gflops"),
            "paper_top1": row.paper.get("top1"), "paper_throughput": row.paper.get("throughput"),
            "reproduces_paper": row.reproduces_paper,
            "params_match": (round(c["params"] / 1e6, 1) == row.paper.get("params_M")) if row.paper.get("params_M") else None,
            "gflops_match": (round(c[ab.flops_convention] / 1e9, 1) == row.paper.get("gflops"))
            if row.paper.get("gflops") else None,
        })
    corr = rank_correlation([r["top1_mean"] for r in out_rows], [r["paper_top1"] for r in out_rows])
    corr.update(seed_bootstrap_tau([r["top1_seeds"] for r in out_rows], [r["paper_top1"] for r in out_rows]))
    return {"name": ab.name, "title": ab.title, "paper_metric": ab.paper_metric, "rows": out_rows, "rank_correlation_vs_paper": corr}


def default_run_dir(ab: Ablation) -> Path:
    """Where ``archspace ablate`` keeps a run unless told otherwise: runs/ablation_<name>/ (its study and tables).
    The committed tables in experiments/results/ are only written with ``--out experiments/results``, so a re-run
    never overwrites them."""
    return Path("runs") / f"ablation_{ab.name}"


def run_ablation(ab: Ablation, run_dir: Path, out_dir: Path, *, storage: Optional[str] = None, progress: Any = None,
                 source: str = "", latency_repeats: Optional[int] = None) -> dict[str, Any]:
    """Evaluate every (row, seed) with the resumable engine and write ablation_<name>.csv/.json to ``out_dir``."""
    import datetime

    from .engine import open_study, rows_and_specs, run_worker
    from ..files import atomic_write_text
    from .results import to_csv

    space = as_space(ab)
    run_worker(space, run_dir, storage=storage, progress=progress)
    rows, _ = rows_and_specs(open_study(space, run_dir, storage))
    records = measure_rows(ab, latency_repeats) if ab.measure.latency else None
    table = ablation_table(ab, rows, records)
    study = open_study(space, run_dir, storage)
    rec = next(iter(records.values())).model_dump(mode="json") if records else None
    acc = next((t.user_attrs.get("accuracy") for t in study.get_trials(deepcopy=False) if t.user_attrs.get("accuracy")), None)
    table["protocol"] = {
        "source": source, "date": datetime.date.today().isoformat(), "seeds": ab.seeds,
        "evaluator": ab.evaluator.model_dump(mode="json"),
        "accuracy_device": (acc or {}).get("device"), "dataset": (acc or {}).get("dataset"),
        "train_size": (acc or {}).get("train_size"), "test_size": (acc or {}).get("test_size"),
        "latency": (rec or {}).get("protocol"),
        "params_flops": f"224x224, 1000 classes, batch 1; FLOPs as MACs ({ab.flops_convention} convention)",
    }
    if records:
        table["protocol"]["latency_note"] = "measured after the trials for all rows at once, repeats interleaved across rows"
        for r in table["rows"]:
            r["latency_cv"] = round(records[r["label"]].cv, 4)
    out_dir = Path(out_dir)
    cols = ["label", "params", "params_M", "paper_params_M", "params_match", "gmacs_smt_paper", "gmacs_fvcore",
            "paper_gflops", "gflops_match", "latency_ms", "images_per_s", "paper_throughput", "top1_mean", "top1_std",
            "seeds", "paper_top1", "reproduces_paper"]
    atomic_write_text(out_dir / f"ablation_{ab.name}.csv", to_csv(table["rows"], cols))
    atomic_write_text(out_dir / f"ablation_{ab.name}.json", json.dumps(table, indent=2) + "\n")
    return table
