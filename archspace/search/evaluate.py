"""One sample of a space, evaluated: spec -> constraints (cheap) -> latency -> accuracy; never raises for a bad sample."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..measure.complexity import complexity
from ..spec.errors import SpecError
from ..spec.io import spec_hash, spec_to_dict
from .space import Space, seed_of, spec_for

if TYPE_CHECKING:
    from ..measure.latency import Calibration

Verdict = Literal["complete", "invalid", "infeasible", "failed", "pruned"]


class Outcome(BaseModel):
    """What a trial produced: a verdict, the objective values, and the records behind them."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    reason: Optional[str] = None
    values: dict[str, float] = {}
    spec_hash: Optional[str] = None
    spec: Optional[dict] = None
    cost: dict[str, int] = {}
    latency: Optional[dict] = None
    accuracy: Optional[dict] = None
    seed: int = 0
    seconds: float = 0.0

    @property
    def cache_key(self) -> str:
        """Architecture and evaluation seed."""
        return f"{self.spec_hash}:{self.seed}"

    def objective_values(self, space: Space) -> list[float]:
        """Values in the order of the space's objectives."""
        return [self.values[o.key] for o in space.objectives]


def _metrics(space: Space, cost: dict[str, int]) -> dict[str, float]:
    conv = next((o.convention for o in space.objectives if o.metric == "flops"), "smt-paper")
    return {"mparams": cost["params"] / 1e6, "gmacs": cost[conv] / 1e9}


def check_constraints(space: Space, cost: dict[str, int], latency_ms: Optional[float] = None) -> Optional[str]:
    """The first violated constraint, as a sentence, or None."""
    c = space.constraints
    if c.max_params is not None and cost["params"] > c.max_params:
        return f"params {cost['params']:,} > max_params {c.max_params:,}"
    if c.max_flops is not None and cost[c.flops_convention] > c.max_flops:
        return f"{c.flops_convention} MACs {cost[c.flops_convention]:.4g} > max_flops {c.max_flops:.4g}"
    if c.max_latency_ms is not None and latency_ms is not None and latency_ms > c.max_latency_ms:
        return f"latency {latency_ms:.2f} ms > max_latency_ms {c.max_latency_ms}"
    return None


def prepare(space: Space, values: dict[str, Any], base: Optional[dict] = None) -> Outcome:
    """The cheap part: spec, hash and complexity, constraints on params/FLOPs (no model is built)."""
    t0 = time.perf_counter()
    try:
        spec = spec_for(space, values, base)
    except SpecError as exc:
        return Outcome(verdict="invalid", reason=str(exc), seconds=time.perf_counter() - t0)
    cost = complexity(spec, space.measure.resolution, num_classes=space.num_classes)
    out = Outcome(verdict="complete", spec_hash=spec_hash(spec), spec=spec_to_dict(spec), cost=cost,
                  values=_metrics(space, cost), seed=seed_of(space, values))
    problem = check_constraints(space, cost)
    if problem:
        out.verdict, out.reason = "infeasible", problem
    out.seconds = time.perf_counter() - t0
    return out


def latency_calibration(space: Space, stored: Optional[dict] = None) -> Optional["Calibration"]:
    """The calibration a search's CPU latencies use: ``stored`` if it fits the space's protocol, else a new one.

    None when the space measures no latency, measures it on a GPU, or turns calibration off.
    """
    m = space.measure
    if not (m.latency and m.calibrate and m.device == "cpu"):
        return None
    from ..measure.latency import Calibration, calibrate

    if stored:
        cal = Calibration.model_validate(stored)
        if cal.fits(m.threads):
            return cal
    return calibrate(threads=m.threads)


def measure(space: Space, out: Outcome, progress: Optional[Callable[[Any], Any]] = None,
            calibration: Optional["Calibration"] = None) -> Outcome:
    """The expensive part: latency (if asked for, against ``calibration`` on the CPU), then accuracy from the space's evaluator."""
    from ..nn.build import build
    from ..spec.io import spec_from_dict

    t0 = time.perf_counter()
    spec = spec_from_dict(out.spec)
    m = space.measure
    if m.latency:
        from ..measure.latency import measure_latency

        model = build(spec).eval()
        rec = measure_latency(model, name=out.spec_hash or "trial", device=m.device, batch=m.batch,
                              resolution=m.resolution, threads=m.threads, warmup=m.warmup, repeats=m.repeats,
                              calibration=calibration if m.device == "cpu" else None)
        out.latency = rec.model_dump(mode="json")
        out.values["latency_ms"] = rec.median_ms
        out.values["images_per_s"] = rec.images_per_s
        del model
        problem = check_constraints(space, out.cost, rec.median_ms)
        if problem:
            out.verdict, out.reason = "infeasible", problem
            out.seconds += time.perf_counter() - t0
            return out
    ev = space.evaluator
    from ..evaluate import TrainBudget, evaluate

    budget = TrainBudget.cpu_default(**ev.budget) if ev.device == "cpu" else TrainBudget.gpu_default(**ev.budget)
    budget = budget.model_copy(update={"seed": out.seed})
    result = evaluate(lambda: build(spec), ev.kind, budget=budget, dataset=ev.dataset, dataset_root=ev.dataset_root,
                      device=ev.device, progress=progress)
    out.accuracy = result.model_dump(mode="json")
    if ev.kind == "train":
        if result.status != "ok":
            out.verdict, out.reason = ("pruned" if result.status == "pruned" else "failed"), result.reason or result.status
        else:
            out.values["accuracy"] = 100.0 * float(result.top1)
    else:
        out.values["accuracy"] = float(result.score)
    out.seconds += time.perf_counter() - t0
    return out


def evaluator_key(space: Space) -> str:
    """What must match for a cached result to be reused: evaluator, measurement protocol, classes."""
    return json.dumps({"evaluator": space.evaluator.model_dump(mode="json"), "measure": space.measure.model_dump(mode="json"),
                       "num_classes": space.num_classes, "objectives": [o.model_dump(mode="json") for o in space.objectives]},
                      sort_keys=True)
