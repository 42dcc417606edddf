"""The Ray Tune engine: the same define-by-run space through ``OptunaSearch``, per-trial resources, ASHA for one objective.

Ray is an optional extra (``pip install 'archspace[ray]'``); importing archspace never imports it.
Results land in the same run-directory format as the Optuna engine (trials.csv, pareto.csv, pareto/).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import optuna

from .engine import make_sampler, record_constraints
from .latency import ship
from .records import crashed, encode, row
from .trial import latency_calibration, run_trial, screen
from .space import Space, base_values, suggest
from .storage import open_storage
from .store import write_results
from ..vocab import VALUE_COLUMNS

logger = logging.getLogger(__name__)

SENTINEL = 1e12  # objective value Tune sees for a sample that could not be evaluated (never on a front, never told to Optuna)
STOPPED = "stopped.json"  # written in a trial folder when Tune's scheduler (ASHA) stopped the trial early


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


def _trainable(space_json: str, calibration_json: Optional[str] = None, run_dir: Optional[str] = None,
               shipped: Optional[dict[str, str]] = None):
    """The function Ray runs per trial: evaluate the sampled values, report objectives, the record and the node.
    ``shipped``: the device profiles' text by the driver's path, so a node without those files predicts the same."""

    def run(config: dict) -> None:
        import ray
        from ray import tune

        from ..measure.latency import Calibration
        from .latency import receive

        receive(shipped or {})

        space = Space.model_validate_json(space_json)
        calibration = Calibration.model_validate_json(calibration_json) if calibration_json else None
        values = {p.name: config[p.name] for p in space.params}
        out = screen(space, values)

        single = len(space.objectives) == 1

        def report_fidelity(event: Any) -> Optional[bool]:
            # intermediate fidelities only: ASHA stops a trial whose report reaches max_t, so the last epoch is
            # reported once, with the trial's outcome
            if getattr(event, "kind", None) == "fidelity" and single and event.top1 is not None and event.epoch < event.epochs:
                tune.report({"accuracy": 100.0 * event.top1, "epoch": event.epoch, "verdict": "running"})
            return None

        from .turns import Turns

        turns = Turns(Path(run_dir)) if run_dir and space.measure.timed else None  # trials on one node take turns
        out = run_trial(space, out, report_fidelity, calibration, turns)
        metrics: dict[str, Any] = {"verdict": out.verdict, "record_json": json.dumps(encode(out)),
                                   "node": ray.get_runtime_context().get_node_id(),
                                   "constraints": json.dumps(out.constraint_values()) if out.constraints else ""}
        evaluated = out.verdict == "complete" or (out.verdict == "infeasible" and out.has_objectives(space))
        for o in space.objectives:  # what Tune and its scheduler see; the record keeps the truth
            v = out.values.get(o.key)
            if v is None or not evaluated or not math.isfinite(v):
                v = -SENTINEL if o.direction == "maximize" else SENTINEL
            metrics[o.key] = v
        if single and out.accuracy and out.accuracy.get("epochs_done"):
            metrics["epoch"] = out.accuracy["epochs_done"]
        tune.report(metrics)

    return run


def calibration_file(run_dir: Path) -> Path:
    """Where a Ray run keeps its latency calibration (one per run, measured on the driver)."""
    return Path(run_dir) / "latency_calibration.json"


def stored_calibration(space: Space, run_dir: Path) -> Any:
    """The calibration a Ray run's trials used (a new one when none was kept or it does not fit the space)."""
    path = calibration_file(run_dir)
    return latency_calibration(space, json.loads(path.read_text()) if path.exists() else None)


def _run_calibration(space: Space, run_dir: Path) -> Optional[str]:
    """JSON of the run's latency calibration, kept in :func:`calibration_file` so a resumed run reuses it."""
    from ..files import atomic_write_text

    path = calibration_file(run_dir)
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
            if final is None and (tdir / STOPPED).exists():  # stopped early by the scheduler, not cut off by a kill
                final = json.loads((tdir / STOPPED).read_text())
            error = None
            if final is None and (tdir / "error.txt").exists():
                lines = [ln for ln in (tdir / "error.txt").read_text().splitlines() if ln.strip()]
                error = lines[-1].strip()[:300] if lines else "Ray trial error"
            started = params.stat().st_mtime
            trials.append(RayTrial(k, tdir.name, config, started, final, error))
    return sorted(trials, key=lambda t: (t.segment, tag_index(t.name), t.started, t.name))


def tag_index(folder: str) -> int:
    """The creation index Tune puts in a trial folder's name (``run_<id>_<index>_<config>_<date>``): trials are
    numbered by it, so a number never shifts when folders are copied to the run directory later."""
    m = re.match(r"^[A-Za-z0-9]+_[0-9a-f]+(?:_[0-9]+)?_([0-9]+)_", folder)
    return int(m.group(1)) if m else 0


def result_record(result: dict) -> dict[str, Any]:
    """The trial record in a Ray report (:func:`archspace.search.records.encode`), or one rebuilt from the
    separate keys that earlier versions reported."""
    if result.get("record_json"):
        return json.loads(result["record_json"])
    values = json.loads(result["values_json"]) if result.get("values_json") else {
        k: result[k] for k in VALUE_COLUMNS if result.get("verdict") == "complete" and isinstance(result.get(k), (int, float))}
    record = {"verdict": result.get("verdict"), "reason": result.get("reason") or None, "values": values,
              "spec_hash": result.get("spec_hash") or None, "seconds": result.get("seconds"), "arch": result.get("arch")}
    if result.get("spec_json"):
        record["spec"] = json.loads(result["spec_json"])
    return record


def _rows(space: Space, trials: list[RayTrial], base: Optional[dict]) -> tuple[list[dict], dict[str, dict]]:
    """trials.csv rows (one per Ray trial; a trial cut off by a killed driver is "killed", then retried) and specs."""
    rows, specs, first_seen, crashes = [], {}, {}, {}
    names = [p.name for p in space.params]
    for number, t in enumerate(trials):
        config = {k: t.config.get(k) for k in names}
        key = json.dumps(config, sort_keys=True)
        context = {"reference": "base" if config == base else None,
                   "worker": ((t.final or {}).get("node") or "")[:12] or None}
        if key in first_seen and first_seen[key]["verdict"] == "killed":
            context["retry_of"] = first_seen[key]["number"]
        if t.final is not None:
            record = result_record(t.final)
            state = optuna_state(space, record.get("verdict"), record.get("values") or {}).name
            if record.get("spec") and record.get("spec_hash"):
                specs[record["spec_hash"]] = record["spec"]
        elif t.error is not None:
            state, record = "FAIL", {"verdict": "failed", "reason": t.error}
        else:
            crashes[key] = crashes.get(key, 0) + 1
            verdict, reason = crashed(crashes[key], space.workers.max_retries, cause="driver or node stopped during the trial")
            state, record = "FAIL", {"verdict": verdict, "reason": reason}
        r = row(number, state, key, record, **context)
        if key not in first_seen or first_seen[key]["verdict"] == "killed":
            first_seen[key] = r
        rows.append(r)
    return rows, specs


def optuna_state(space: Space, verdict: Optional[str], values: dict) -> "optuna.trial.TrialState":
    """The Optuna state of an ended trial, as the Optuna engine records it: COMPLETE when every objective is
    known (an infeasible sample trained anyway included), PRUNED when stopped early or infeasible and not
    trained (its constraint values still count), FAIL otherwise."""
    from optuna.trial import TrialState

    known = all(isinstance(values.get(o.key), (int, float)) for o in space.objectives)
    if verdict in ("complete", "infeasible") and known:
        return TrialState.COMPLETE
    return TrialState.PRUNED if verdict in ("pruned", "infeasible") else TrialState.FAIL


def _searcher(arch_space: Space, **kwargs: Any) -> Any:
    """Ray's ``OptunaSearch``, telling its study what archspace's own engine would: the trial's constraint
    values, and COMPLETE/PRUNED/FAIL by verdict (never the sentinel values Tune sees for unevaluated samples)."""
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    keys = [o.key for o in arch_space.objectives]

    class Searcher(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return super().on_trial_complete(trial_id, result, error)
            r, ot_trial = result or {}, self._ot_trials[trial_id]
            if r.get("constraints"):
                record_constraints(ot_trial, json.loads(r["constraints"]))
            values = result_record(r).get("values") or {} if r else {}
            verdict = r.get("verdict")
            verdict = "pruned" if verdict in (None, "running") else verdict  # stopped by the scheduler mid-training
            state = TrialState.FAIL if error else optuna_state(arch_space, verdict, values)
            try:
                self._ot_study.tell(ot_trial, [values[k] for k in keys] if state == TrialState.COMPLETE else None, state=state)
            except Exception as exc:  # noqa: BLE001 - as OptunaSearch: a tell that fails must not stop the experiment
                logger.warning("sampler study: %s", exc)
            self._completed_trials.add(trial_id)

    return Searcher(**kwargs)


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


def _run_callback(tune: Any, space: Space, ray_dir: Path, segment: int, log: Any = None) -> Any:
    """A Tune callback on the driver: marks a trial its scheduler stopped early (its last report still says
    "running") so the run reads it as pruned, not as cut off by a killed driver; and, with ``log``
    (:class:`archspace.search.tracking.TensorBoardLog`), writes every ended trial under its trials.csv number."""
    from ..files import atomic_write_text
    from .trial import Outcome

    def number_of(trial: Any) -> int:
        """Its trials.csv number: the trials of earlier invocations (already in the run directory), then this
        experiment's trials by creation index (its folder reaches the run directory only when Tune syncs it)."""
        earlier = sum(t.segment < segment for t in read_trials(ray_dir, space.name))
        return earlier + max(tag_index(Path(trial.local_path).name), 1) - 1

    def track(trial: Any, result: dict) -> None:
        if log is None or not trial.local_path:
            return
        n = number_of(trial)
        record = result_record(result)
        out = Outcome(verdict=record["verdict"], reason=record.get("reason"), accuracy=record.get("accuracy"),
                      values=record.get("values") or {})
        log.trial(n, out, label=record.get("arch") or "")

    class Callback(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("verdict") not in (None, "running"):
                track(trial, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            if last.get("verdict") == "running" and trial.local_path:
                epoch = last.get("epoch")
                values = {"accuracy": last["accuracy"]} if isinstance(last.get("accuracy"), (int, float)) else {}
                record = {"verdict": "pruned", "reason": f"stopped by ASHA after epoch {epoch}", "values": values}
                stopped = {"verdict": "pruned", "record_json": json.dumps(record)}
                atomic_write_text(Path(trial.local_path) / STOPPED, json.dumps(stopped) + "\n")
                track(trial, stopped)

    return Callback()


_DISPLAYS: dict[int, Any] = {}  # progress displays of this driver, by key: Tune pickles its callbacks, a display holds locks


def _progress_callback(progress: Any, tune: Any, done: int) -> Any:
    """A Tune callback that forwards finished trials to archspace's progress display.

    The display is reached through :data:`_DISPLAYS` by a key, so pickling the callback (Tune keeps its
    callbacks in the experiment's checkpoint) never touches the display's locks and terminal."""
    key = id(progress)
    _DISPLAYS[key] = progress

    class Callback(tune.Callback):
        def __init__(self) -> None:
            self.key, self.done = key, done

        def on_trial_result(self, iteration, trials, trial, result, **info):
            import archspace.search.ray_engine as here  # by reference: a pickled copy of the class carries no display

            display = here._DISPLAYS.get(self.key)
            if display is None or result.get("verdict") in (None, "running"):
                return
            record = result_record(result)
            out = SimpleNamespace(verdict=record["verdict"], reason=record.get("reason"), values=record.get("values") or {})
            display.trial_done(self.done, out, {})
            self.done += 1

    return Callback()


def _missing_members(space: Space, ended: list[str], queued: list[dict]) -> list[dict]:
    """The population plan's members that no ended or queued trial has evaluated (counted as a multiset: a member
    drawn twice is run twice)."""
    from collections import Counter

    from .population import plan

    have = Counter(ended) + Counter(json.dumps(p, sort_keys=True) for p in queued)
    out = []
    for member in plan(space):
        key = json.dumps(member, sort_keys=True)
        if have[key] > 0:
            have[key] -= 1
        else:
            out.append(member)
    return out


def run_ray(space: Space, run_dir: Path, *, address: Optional[str] = None, storage: Optional[str] = None,
            progress: Any = None, num_cpus: Optional[int] = None, cpus_per_trial: float = 1.0,
            gpus_per_trial: float = 0.0, log: Any = None) -> dict[str, Any]:
    """Run (or resume) a search on a local Ray instance or the cluster at ``address``.

    Each invocation is one Tune experiment (``run_dir/ray/<name>-<k>``) that runs the trials still
    missing to reach ``space.budget.trials``: a resume honours a new budget, and trials a killed driver
    left unfinished are run again first (at most ``workers.max_retries`` times each). The sampler's
    study lives in ``storage`` (or a journal file in the run directory), so every experiment samples
    with the whole history. Concurrency comes from the cluster's resources, not this machine's CPUs.
    ``log`` (:class:`archspace.search.tracking.TensorBoardLog`) gets every trial as it ends, written on
    the driver from the trial's reports, so it works for trials on any node.
    """
    ray, tune = _ray()

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
    cluster_cpus = ray.cluster_resources().get("CPU", 1)  # the cluster's CPUs, not this machine's
    concurrency = max(1, int(cluster_cpus // max(cpus_per_trial, 1e-9)))
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
        if space.sampler.by:  # a population: its planned members not ended yet, in plan order
            points += _missing_members(space, [r["params"] for r in ended], points + waiting)
        elif base is not None and not any(r["reference"] == "base" for r in rows) and base not in points + waiting:
            points.append(base)
        points = points[:max(0, remaining - len(waiting))]
        searcher = _searcher(space, space=DefineByRun(space), storage=sampler_storage, study_name=study_name,
                             metric=metrics[0] if single else metrics, mode=modes[0] if single else modes,
                             points_to_evaluate=points or None, sampler=PicklableSampler(space, space.seed + len(ended)))
        searcher = tune.search.ConcurrencyLimiter(searcher, max_concurrent=concurrency)
        scheduler = None
        if single and space.evaluator.kind == "train":
            from ray.tune.schedulers import ASHAScheduler

            epochs = space.evaluator.budget.epochs
            scheduler = ASHAScheduler(time_attr="epoch", max_t=max(epochs, 1), grace_period=1, reduction_factor=3)
        trainable = tune.with_resources(_trainable(space.model_dump_json(), _run_calibration(space, run_dir), str(run_dir),
                                                   ship(space)),
                                        {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        segment = len(_segments(ray_dir, space.name))
        callbacks = [_run_callback(tune, space, ray_dir, segment, log)]
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
                _DISPLAYS.pop(id(progress), None)
        trials = read_trials(ray_dir, space.name)
        rows, _ = _rows(space, trials, base)
    rows, specs = _rows(space, trials, base)
    summary = write_results(run_dir, space, rows, specs)
    summary["backend"] = "ray"
    summary["concurrency"] = concurrency
    summary["nodes"] = len({r["worker"] for r in rows if r.get("worker")})
    if progress is not None:
        progress.failures = sum(r["verdict"] not in ("complete", "killed") for r in rows)
    return summary
