"""The Ray Tune engine: the same define-by-run space through ``OptunaSearch``, per-trial resources, ASHA for one objective.

Ray is an optional extra (``pip install 'archspace[ray]'``); importing archspace never imports it.
Results land in the same run-directory format as the Optuna engine (trials.csv, pareto.csv, pareto/).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import optuna

from .engine import make_sampler
from .trial import latency_calibration, run_trial, screen
from .space import Space, base_values, suggest
from .storage import open_storage
from .store import write_results
from ..vocab import VALUE_COLUMNS

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


def _trainable(space_json: str, calibration_json: Optional[str] = None):
    """The function Ray runs per trial: evaluate the sampled values, report objectives, the record and the node."""

    def run(config: dict) -> None:
        import ray
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
                                   "seconds": out.seconds, "spec_json": json.dumps(out.attrs()["spec"]) if out.spec else "",
                                   "node": ray.get_runtime_context().get_node_id()}
        for o in space.objectives:
            v = out.values.get(o.key)
            if v is None or out.verdict != "complete" or not math.isfinite(v):
                v = -SENTINEL if o.direction == "maximize" else SENTINEL
            metrics[o.key] = v
        for k in VALUE_COLUMNS:
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


@dataclass
class RayTrial:
    """One Ray trial of a run, read back from its folder (``params.json``, ``result.json``, ``error.txt``)."""

    segment: int
    name: str
    config: dict
    started: float
    final: Optional[dict]  # the last report with a verdict other than "running"; None if the trial never ended
    error: Optional[str]

    @property
    def ended(self) -> bool:
        return self.final is not None or self.error is not None


def _segments(ray_dir: Path, name: str) -> list[Path]:
    """The run's Tune experiments, oldest first: one per ``archspace search`` invocation that ran trials."""
    found = [p for p in ray_dir.glob(f"{name}-*") if p.is_dir() and p.name[len(name) + 1:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(name) + 1:]))


def read_trials(ray_dir: Path, name: str) -> list[RayTrial]:
    """Every trial Ray started for this run, in start order, from the trial folders (not Tune's state file,
    which a killed driver may not have written since the trial ended)."""
    trials = []
    for k, seg in enumerate(_segments(ray_dir, name)):
        for params in seg.glob("*/params.json"):
            tdir = params.parent
            try:
                config = json.loads(params.read_text())
            except (OSError, ValueError):
                continue  # a folder the killed driver did not finish writing: the trial never ran
            reports = []
            result = tdir / "result.json"
            if result.exists():
                for line in result.read_text().splitlines():
                    try:
                        reports.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut by a kill
            final = next((r for r in reversed(reports) if r.get("verdict") not in (None, "running")), None)
            error = None
            if final is None and (tdir / "error.txt").exists():
                lines = [ln for ln in (tdir / "error.txt").read_text().splitlines() if ln.strip()]
                error = lines[-1].strip()[:300] if lines else "Ray trial error"
            started = min((float(r["timestamp"]) for r in reports if "timestamp" in r), default=params.stat().st_mtime)
            trials.append(RayTrial(k, tdir.name, config, started, final, error))
    return sorted(trials, key=lambda t: (t.segment, t.started, t.name))


def _rows(space: Space, trials: list[RayTrial], base: Optional[dict]) -> tuple[list[dict], dict[str, dict]]:
    """trials.csv rows (one per Ray trial; a trial cut off by a killed driver is "killed", then retried) and specs."""
    rows, specs, first_seen, tries = [], {}, {}, {}
    names = [p.name for p in space.params]
    max_retries = space.workers.max_retries
    for number, t in enumerate(trials):
        config = {k: t.config.get(k) for k in names}
        key = json.dumps(config, sort_keys=True)
        m = t.final or {}
        row: dict[str, Any] = {"number": number, "params": key, "reference": "base" if config == base else None,
                               "worker": (m.get("node") or "")[:12] or None, "seconds": m.get("seconds")}
        if t.final is not None:
            verdict = m.get("verdict")
            row.update(state="COMPLETE" if verdict == "complete" else "FAIL", verdict=verdict,
                       reason=m.get("reason") or None, spec_hash=m.get("spec_hash") or None)
            if verdict == "complete":
                for k in VALUE_COLUMNS:
                    v = m.get(k)
                    row[k] = v if isinstance(v, (int, float)) and math.isfinite(v) else None
            if m.get("spec_json"):
                specs[m["spec_hash"]] = json.loads(m["spec_json"])
        elif t.error is not None:
            row.update(state="FAIL", verdict="failed", reason=t.error)
        else:
            tries[key] = tries.get(key, 0) + 1
            crashed = tries[key] > max_retries
            row.update(state="FAIL", verdict="failed" if crashed else "killed",
                       reason=f"crashed {tries[key]} times" if crashed else "driver or node stopped during the trial")
        if key in first_seen and (first_seen[key]["verdict"] == "killed"):
            row["retry_of"] = first_seen[key]["number"]
        if key not in first_seen or first_seen[key]["verdict"] == "killed":
            first_seen[key] = row
        rows.append(row)
    return rows, specs


def _settle_sampler_study(storage: Any, study_name: str) -> list[dict]:
    """Fail the sampler-study trials a killed driver left RUNNING (one driver per run directory) and return
    the parameters of those still WAITING (enqueued but never asked: the next experiment asks them first)."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
    return [dict(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]


def _progress_callback(progress: Any, tune: Any, done: int) -> Any:
    """A Tune callback that forwards finished trials to archspace's progress display."""

    class Callback(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            nonlocal done
            if result.get("verdict") in (None, "running"):
                return
            out = SimpleNamespace(verdict=result["verdict"], reason=result.get("reason") or None,
                                  values={k: result[k] for k in VALUE_COLUMNS
                                          if isinstance(result.get(k), (int, float)) and math.isfinite(result[k])})
            if out.verdict != "complete":
                progress.failures += 1
            progress.trial_done(done, out, {})
            done += 1

    return Callback()


def run_ray(space: Space, run_dir: Path, *, address: Optional[str] = None, storage: Optional[str] = None,
            progress: Any = None, num_cpus: Optional[int] = None, cpus_per_trial: float = 1.0,
            gpus_per_trial: float = 0.0) -> dict[str, Any]:
    """Run (or resume) a search on a local Ray instance or the cluster at ``address``.

    Each invocation is one Tune experiment (``run_dir/ray/<name>-<k>``) that runs the trials still
    missing to reach ``space.budget.trials``: a resume honours a new budget, and trials a killed driver
    left unfinished are run again first (at most ``workers.max_retries`` times each). The sampler's
    study lives in ``storage`` (or a journal file in the run directory), so every experiment samples
    with the whole history. Concurrency comes from the cluster's resources, not this machine's CPUs.
    """
    ray, tune = _ray()
    from ray.tune.search.optuna import OptunaSearch

    run_dir = Path(run_dir).resolve()
    ray_dir = run_dir / "ray"
    ray_dir.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else (num_cpus or os.cpu_count()), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    metrics = [o.key for o in space.objectives]
    modes = ["max" if o.direction == "maximize" else "min" for o in space.objectives]
    single = len(metrics) == 1
    base = base_values(space) if space.enqueue_base else None
    study_name = f"{space.name}_ray"
    sampler_storage = open_storage(storage or f"journal://{ray_dir / 'sampler.log'}")
    waiting = _settle_sampler_study(sampler_storage, study_name)
    trials = read_trials(ray_dir, space.name)
    rows, _ = _rows(space, trials, base)
    ended = [r for r in rows if r["verdict"] != "killed"]
    remaining = space.budget.trials - len(ended)
    if remaining > 0:
        ended_keys = {r["params"] for r in ended}
        retries = []
        for r in rows:  # the unfinished trials of a killed driver first, each once
            if r["verdict"] == "killed" and r["params"] not in ended_keys and r["params"] not in retries:
                retries.append(r["params"])
        points = [p for p in (json.loads(k) for k in retries) if p not in waiting]
        if base is not None and not any(r["reference"] == "base" for r in rows) and base not in points + waiting:
            points.append(base)
        points = points[:max(0, remaining - len(waiting))]
        searcher = OptunaSearch(space=DefineByRun(space), storage=sampler_storage, study_name=study_name,
                                metric=metrics[0] if single else metrics, mode=modes[0] if single else modes,
                                points_to_evaluate=points or None, sampler=PicklableSampler(space, space.seed))
        cluster_cpus = ray.cluster_resources().get("CPU", 1)  # the cluster's CPUs, not this machine's
        searcher = tune.search.ConcurrencyLimiter(searcher, max_concurrent=max(1, int(cluster_cpus // max(cpus_per_trial, 1e-9))))
        scheduler = None
        if single and space.evaluator.kind == "train":
            from ray.tune.schedulers import ASHAScheduler

            epochs = int(space.evaluator.budget.get("epochs", 2))
            scheduler = ASHAScheduler(time_attr="epoch", max_t=max(epochs, 1), grace_period=1, reduction_factor=3)
        trainable = tune.with_resources(_trainable(space.model_dump_json(), _run_calibration(space, run_dir)),
                                        {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        segment = len(_segments(ray_dir, space.name))
        callbacks = []
        if progress is not None:
            progress.start(space.budget.trials, len(ended))
            callbacks.append(_progress_callback(progress, tune, len(rows)))
        # Tune prints its experiment table on stdout whatever its verbosity: keep stdout for archspace's own output
        chatter = sys.stderr if progress is not None and progress.enabled else io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter):
                tune.Tuner(trainable,
                           run_config=tune.RunConfig(name=f"{space.name}-{segment}", storage_path=str(ray_dir), verbose=0,
                                                     failure_config=tune.FailureConfig(max_failures=space.workers.max_retries),
                                                     callbacks=callbacks),
                           tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining,
                                                       time_budget_s=space.budget.timeout_s,
                                                       metric=metrics[0] if single and scheduler else None,
                                                       mode=modes[0] if single and scheduler else None)).fit()
        finally:
            if progress is not None:
                progress.stop()
        trials = read_trials(ray_dir, space.name)
        rows, _ = _rows(space, trials, base)
    rows, specs = _rows(space, trials, base)
    summary = write_results(run_dir, space, rows, specs)
    summary["backend"] = "ray"
    summary["nodes"] = len({r["worker"] for r in rows if r.get("worker")})
    if progress is not None:
        progress.failures = sum(r["verdict"] not in ("complete", "killed") for r in rows)
    return summary
