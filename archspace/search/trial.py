"""The one trial runner every engine uses: sample -> screen -> build -> measure -> evaluate -> outcome.

:func:`screen` is the cheap part (validate the sampled spec, analytic complexity, constraints, a
memory estimate) and builds nothing; :func:`run_trial` does the rest. Neither raises for anything
that goes wrong inside a trial: an impossible sample, an out-of-memory build (CPU or GPU), a
forward error, a missing dataset or a non-finite objective become an :class:`Outcome` with a
verdict and the reason, so one bad sample is that trial's failure and never the search's.
"""
from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from ..measure.complexity import complexity
from ..spec.errors import SpecError
from ..spec.io import spec_hash
from .space import Space, seed_of, spec_for

if TYPE_CHECKING:
    from ..measure.latency import Calibration
    from ..spec.net import NetSpec
    from .turns import Turns

Verdict = Literal["complete", "invalid", "infeasible", "failed", "pruned"]
VERDICTS: tuple[str, ...] = ("complete", "invalid", "infeasible", "failed", "pruned")
BYTES_PER_PARAM_TRAINING = 16  # fp32 weights, gradients and AdamW's two moments


@dataclass
class Outcome:
    """What a trial produced: a verdict (and why), objective values, the spec and the records behind them."""

    verdict: Verdict
    reason: Optional[str] = None
    values: dict[str, float] = field(default_factory=dict)
    spec: Optional["NetSpec"] = None
    spec_hash: Optional[str] = None
    cost: dict[str, int] = field(default_factory=dict)
    latency: Optional[dict] = None
    accuracy: Optional[dict] = None
    seed: int = 0
    seconds: float = 0.0
    constraints: dict[str, Optional[float]] = field(default_factory=dict)  # value / limit - 1 per limit; None: not measured

    def constraint_values(self) -> list[float]:
        """The Optuna constraint values (feasible at <= 0); a limit not measured (the latency of a sample
        already over another limit) counts as met."""
        return [0.0 if v is None else float(v) for v in self.constraints.values()]

    def has_objectives(self, space: Space) -> bool:
        """Every objective has a finite value: a complete trial, or an infeasible one trained anyway."""
        return all(isinstance(self.values.get(o.key), (int, float)) and math.isfinite(self.values[o.key])
                   for o in space.objectives)

    @property
    def cache_key(self) -> str:
        """Architecture and evaluation seed."""
        return f"{self.spec_hash}:{self.seed}"

    def objective_values(self, space: Space) -> list[float]:
        """Values in the order of the space's objectives."""
        return [self.values[o.key] for o in space.objectives]

    def fail(self, verdict: Verdict, reason: str) -> "Outcome":
        self.verdict, self.reason = verdict, reason
        return self


def _metrics(space: Space, cost: dict[str, int]) -> dict[str, float]:
    conv = next((o.convention for o in space.objectives if o.metric == "flops"), "smt-paper")
    return {"mparams": cost["params"] / 1e6, "gmacs": cost[conv] / 1e9}


def settle_constraints(space: Space, out: Outcome, *, final: bool) -> Outcome:
    """Record the space's constraint values on ``out``; a violation ends it as ``infeasible`` now under the
    ``skip`` policy, and only once it is evaluated (``final``) under ``train``."""
    c = space.constraints
    latency = out.values.get("latency_ms")
    out.constraints = c.violations(out.cost, latency)
    problem = c.first_violation(out.cost, latency)
    if problem and out.verdict == "complete" and (final or c.infeasible == "skip"):
        out.fail("infeasible", problem)
    return out


def memory_limit_bytes() -> Optional[int]:
    """What this process may allocate: the address-space limit or the machine's memory, whichever is lower."""
    limits = []
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft not in (resource.RLIM_INFINITY, -1):
            limits.append(int(soft))
    except (ImportError, ValueError, OSError):
        pass
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    return min(limits) if limits else None


def screen(space: Space, values: dict[str, Any], base: Optional[dict] = None) -> Outcome:
    """The cheap part: spec, hash, analytic complexity, constraints and a memory estimate; no model is built."""
    t0 = time.perf_counter()
    try:
        spec = spec_for(space, values, base)
    except SpecError as exc:
        return Outcome(verdict="invalid", reason=str(exc), seconds=time.perf_counter() - t0)
    out = screen_spec(space, spec, seed_of(space, values))
    out.seconds = time.perf_counter() - t0
    return out


def screen_spec(space: Space, spec: "NetSpec", seed: int) -> Outcome:
    """:func:`screen` for a spec already made (a sample's, or a reference network's)."""
    t0 = time.perf_counter()
    cost = complexity(spec, space.measure.resolution, num_classes=space.num_classes)
    out = Outcome(verdict="complete", spec=spec, spec_hash=spec_hash(spec), cost=cost, values=_metrics(space, cost),
                  seed=seed)
    if space.measure.latency == "predicted" or space.measure.report_profiles:
        _predict(space, out)  # a lookup, so a latency limit is checked before anything is built
    settle_constraints(space, out, final=False)
    limit = memory_limit_bytes()
    need = cost["params"] * BYTES_PER_PARAM_TRAINING
    if out.verdict == "complete" and limit is not None and need > limit:  # this machine's limit, not the space's
        out.fail("failed", f"{cost['params']:,} params need about {need / 2**30:.1f} GiB to train, more than the "
                           f"{limit / 2**30:.1f} GiB this process may use")
    out.seconds = time.perf_counter() - t0
    return out


def _predict(space: Space, out: Outcome) -> None:
    """Predicted latency from the space's device profile (the trial's latency) and its report profiles."""
    from .latency import REPORT_PREFIX, predicted, reported

    try:
        if space.measure.latency == "predicted":
            out.latency = predicted(space, out.spec)
            out.values["latency_ms"] = out.latency["median_ms"]
            out.values["images_per_s"] = out.latency["images_per_s"]
        extra = reported(space, out.spec)
    except (ValueError, SpecError) as exc:
        out.fail("failed", f"latency model: {' '.join(str(exc).split())}")
        return
    if extra:
        out.latency = {**(out.latency or {}), "reported": extra}
        out.values.update({REPORT_PREFIX + name: ms for name, ms in extra.items()})


def _error_reason(exc: BaseException) -> str:
    """'TypeName: first line of the message', short enough for a table cell."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def run_trial(space: Space, out: Outcome, progress: Optional[Callable[[Any], Any]] = None,
              calibration: Optional["Calibration"] = None, turns: Optional["Turns"] = None) -> Outcome:
    """The expensive part on a screened outcome: latency (if asked for), then accuracy; never raises for the trial's
    own errors. With ``turns`` (the run directory's :class:`~archspace.search.turns.Turns`) the latency is timed
    while no other worker of the run trains, and training gives way to their timing between steps."""
    if out.verdict != "complete":
        return out
    t0 = time.perf_counter()
    try:
        _measure_and_evaluate(space, out, progress, calibration, turns)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - every error inside a trial is that trial's failure
        out.fail("failed", _error_reason(exc))
        gc.collect()
        _empty_cuda_cache()
    if out.verdict == "complete":
        for o in space.objectives:
            v = out.values.get(o.key)
            if v is None or not math.isfinite(v):
                out.fail("failed", f"non-finite {o.metric} ({v})")
                break
        settle_constraints(space, out, final=True)
    out.seconds += time.perf_counter() - t0
    return out


def _empty_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort after an out-of-memory failure
        pass


def _measure_and_evaluate(space: Space, out: Outcome, progress, calibration, turns) -> None:
    from ..nn.build import build
    from .turns import no_turn, no_work

    spec = out.spec
    m = space.measure
    if m.timed:
        from ..measure.latency import apply_process_settings, measure_latency
        from .latency import unit

        apply_process_settings()  # idempotent: the search's process measures under the recorded settings
        model = build(spec).eval()
        calibration = calibration if m.device == "cpu" else None
        with turns.timing() if turns is not None else no_turn():
            rec = measure_latency(model, m.latency_settings(), name=out.spec_hash or "trial", calibration=calibration)
        del model
        out.latency = {**rec.model_dump(mode="json"), "source": "measured", "unit": unit(space, calibration),
                       **({"reported": out.latency["reported"]} if out.latency and "reported" in out.latency else {})}
        out.values["latency_ms"] = rec.median_ms
        out.values["images_per_s"] = rec.images_per_s
        if settle_constraints(space, out, final=False).verdict != "complete":
            return
    ev = space.evaluator
    from ..evaluate import evaluate

    budget = ev.budget.model_copy(update={"seed": out.seed})
    with turns.working() if turns is not None and m.timed else no_work() as step:
        def stepping(event: Any) -> Any:
            step()  # a worker waiting to time a network gets the cores here
            return progress(event) if progress is not None else None

        result = evaluate(spec, ev.kind, budget=budget, dataset=ev.dataset, dataset_root=ev.dataset_root,
                          device=ev.device, progress=stepping)
    out.accuracy = result.model_dump(mode="json")
    if ev.kind == "train":
        if result.status != "ok":
            out.fail("pruned" if result.status == "pruned" else "failed", result.reason or result.status)
        else:
            out.values["accuracy"] = 100.0 * float(result.top1)
    else:
        out.values["accuracy"] = float(result.score)


def latency_calibration(space: Space, stored: Optional[dict] = None) -> Optional["Calibration"]:
    """The calibration a search's CPU latencies use: ``stored`` if it fits the space's protocol, else a new one.

    A space naming a device profile (``measure.profile``) uses that profile's calibration instead, so its latencies
    are in the profile's unit. None when the space times no latency, times it on a GPU, or turns calibration off.
    """
    m = space.measure
    if not (m.timed and m.calibrate):
        return None
    from ..measure.latency import apply_process_settings, load_or_calibrate
    from .latency import calibration_reference

    apply_process_settings()
    return load_or_calibrate(m, calibration_reference(space) or stored or None)


def evaluator_key(space: Space) -> str:
    """What must match for a cached result to be reused: evaluator, measurement protocol, classes."""
    import json

    from .latency import key

    return json.dumps({"evaluator": space.evaluator.model_dump(mode="json"), "measure": key(space),
                       "num_classes": space.num_classes, "objectives": [o.model_dump(mode="json") for o in space.objectives]},
                      sort_keys=True)
