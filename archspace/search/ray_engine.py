"""The Ray Tune engine: the same define-by-run space through ``OptunaSearch``, per-trial resources, ASHA for one objective.

Ray is an optional extra (``pip install 'archspace[ray]'``); importing archspace never imports it.
Results land in the same run-directory format as the Optuna engine (trials.csv, pareto.csv, pareto/).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import optuna

from .engine import make_sampler
from .trial import latency_calibration, run_trial, screen
from .space import Space, base_spec, base_values, editable, suggest
from .store import write_results

SENTINEL = 1e12  # objective value reported for a sample that could not be evaluated (never on a front)


def _ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise RuntimeError("--backend ray needs Ray Tune: pip install 'archspace[ray]'") from None
    return ray, tune


def _rebuilt_sampler(space_json: str, seed: int):
    return make_sampler(Space.model_validate_json(space_json), seed)


class PicklableSampler(optuna.samplers.BaseSampler):
    """The space's Optuna sampler, pickled as (space, seed) and rebuilt on the other side.

    Ray pickles the searcher when the Tuner is built; NSGA-II holds a thread lock and cannot be
    pickled. Its state lives in the study, so rebuilding it from the space loses nothing.
    """

    def __init__(self, space: Space, seed: int):
        self._args = (space.model_dump_json(), seed)
        self._sampler = make_sampler(space, seed)

    def __getstate__(self) -> dict:
        return {"_args": self._args}

    def __setstate__(self, state: dict) -> None:
        self._args = state["_args"]
        self._sampler = _rebuilt_sampler(*self._args)

    def infer_relative_search_space(self, study, trial):
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        return self._sampler.before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        return self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self):
        return self._sampler.reseed_rng()


class DefineByRun:
    """Picklable define-by-run callable for OptunaSearch: asks the trial for every parameter, returns no constants."""

    def __init__(self, space: Space):
        self.space = space

    def __call__(self, trial: Any) -> None:
        suggest(trial, self.space)
        return None


def _trainable(space_json: str, run_dir: str, calibration_json: Optional[str] = None):
    """The function Ray runs per trial: evaluate the sampled values, report objectives and the record."""

    def run(config: dict) -> None:
        from ray import tune

        from ..measure.latency import Calibration

        space = Space.model_validate_json(space_json)
        calibration = Calibration.model_validate_json(calibration_json) if calibration_json else None
        values = {p.name: config[p.name] for p in space.params}
        out = screen(space, values)

        def report_fidelity(event: Any) -> Optional[bool]:
            if getattr(event, "kind", None) == "fidelity" and len(space.objectives) == 1 and event.top1 is not None:
                tune.report({"accuracy": 100.0 * event.top1, "epoch": event.epoch, "verdict": "running"})
            return None

        out = run_trial(space, out, report_fidelity, calibration)
        metrics: dict[str, Any] = {"verdict": out.verdict, "reason": out.reason or "", "spec_hash": out.spec_hash or "",
                                   "seconds": out.seconds, "spec_json": json.dumps(out.attrs()["spec"]) if out.spec else ""}
        for o in space.objectives:
            v = out.values.get(o.key)
            if v is None or out.verdict != "complete" or not math.isfinite(v):
                v = -SENTINEL if o.direction == "maximize" else SENTINEL
            metrics[o.key] = v
        for k in ("mparams", "gmacs", "latency_ms", "images_per_s", "accuracy"):
            metrics.setdefault(k, out.values.get(k, float("nan")))
        tune.report(metrics)

    return run


def _run_calibration(space: Space, run_dir: Path) -> Optional[str]:
    """JSON of the run's latency calibration, kept in ``run_dir/latency_calibration.json`` so a resumed run reuses it."""
    from ..files import atomic_write_text

    path = run_dir / "latency_calibration.json"
    stored = json.loads(path.read_text()) if path.exists() else None
    cal = latency_calibration(space, stored)
    if cal is None:
        return None
    text = cal.model_dump_json()
    if stored != cal.model_dump(mode="json"):
        atomic_write_text(path, text + "\n")
    return text


def run_ray(space: Space, run_dir: Path, *, address: Optional[str] = None, storage: Optional[str] = None,
            progress: Any = None, num_cpus: Optional[int] = None, cpus_per_trial: float = 1.0,
            gpus_per_trial: float = 0.0) -> dict[str, Any]:
    """Run (or resume) a search on a local Ray instance or the cluster at ``address``."""
    ray, tune = _ray()
    from ray.tune.search.optuna import OptunaSearch

    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else (num_cpus or os.cpu_count()), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    metrics = [o.key for o in space.objectives]
    modes = ["max" if o.direction == "maximize" else "min" for o in space.objectives]
    single = len(metrics) == 1
    points = [base_values(space)] if space.enqueue_base and base_values(space) is not None else None
    optuna_storage = None
    if storage:  # the sampler's study lives in the shared storage too (inspectable with optuna-dashboard)
        import optuna

        from .engine import make_storage

        optuna_storage = make_storage(storage)
        if isinstance(optuna_storage, str):
            optuna_storage = optuna.storages.RDBStorage(optuna_storage)
    searcher = OptunaSearch(space=DefineByRun(space), storage=optuna_storage, study_name=f"{space.name}_ray" if storage else None,
                            metric=metrics[0] if single else metrics, mode=modes[0] if single else modes,
                            points_to_evaluate=points, sampler=PicklableSampler(space, space.seed))
    cluster_cpus = ray.cluster_resources().get("CPU", 1)  # the cluster's CPUs, not this machine's
    searcher = tune.search.ConcurrencyLimiter(searcher, max_concurrent=max(1, int(cluster_cpus // max(cpus_per_trial, 1e-9))))
    scheduler = None
    if single and space.evaluator.kind == "train":
        from ray.tune.schedulers import ASHAScheduler

        epochs = int(space.evaluator.budget.get("epochs", 2))
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max(epochs, 1), grace_period=1, reduction_factor=3)
    trainable = tune.with_resources(_trainable(space.model_dump_json(), str(run_dir), _run_calibration(space, run_dir)),
                                    {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    path = run_dir / "ray" / space.name
    run_config = tune.RunConfig(name=space.name, storage_path=str(run_dir / "ray"), verbose=0,
                                failure_config=tune.FailureConfig(max_failures=2))
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, run_config=run_config,
                           tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                       num_samples=space.budget.trials,
                                                       time_budget_s=space.budget.timeout_s,
                                                       metric=metrics[0] if single and scheduler else None,
                                                       mode=modes[0] if single and scheduler else None))
    results = tuner.fit()
    rows, specs = [], {}
    for number, res in enumerate(sorted(results, key=lambda r: r.metrics.get("trial_id", "") if r.metrics else "")):
        m = res.metrics or {}
        verdict = m.get("verdict") if not res.error else "failed"
        if verdict == "running":
            verdict = "pruned"
        config = {p.name: (res.config or {}).get(p.name) for p in space.params}
        row = {"number": number, "state": "COMPLETE" if verdict == "complete" else "FAIL", "verdict": verdict,
               "reason": m.get("reason") or (str(res.error).splitlines()[0] if res.error else None),
               "spec_hash": m.get("spec_hash") or None, "seconds": m.get("seconds"),
               "params": json.dumps(config, sort_keys=True),
               "reference": "base" if points and config == points[0] else None}
        if verdict == "complete":
            for k in ("mparams", "gmacs", "latency_ms", "images_per_s", "accuracy"):
                v = m.get(k)
                row[k] = v if isinstance(v, (int, float)) and math.isfinite(v) else None
        rows.append(row)
        if m.get("spec_json"):
            specs[m["spec_hash"]] = json.loads(m["spec_json"])
    summary = write_results(run_dir, space, rows, specs)
    summary["backend"] = "ray"
    if progress is not None:
        progress.failures = sum(r["verdict"] != "complete" for r in rows)
    return summary
