"""The Optuna engine: ask/tell over a resumable storage; killed trials retried, repeated architectures reused."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..spec.io import spec_hash
from .evaluate import Outcome, evaluator_key, latency_calibration, measure, prepare
from .space import Space, base_values, editable, base_spec, grid, suggest
from .store import write_results

FINISHED_VERDICTS = ("complete", "invalid", "infeasible", "failed", "pruned")


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a core dependency
        raise RuntimeError("the search needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def default_storage(run_dir: Path) -> str:
    """SQLite file in the run directory."""
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def make_sampler(space: Space, offset: int = 0):
    """The Optuna sampler a space asks for, seeded (offset by the finished trials so a resume samples anew)."""
    optuna = _optuna()
    s, seed = space.sampler, space.seed + offset
    if s.kind == "nsga2":
        pop = s.population_size or max(4, min(50, space.budget.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=pop, seed=seed)
    if s.kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.startup_trials or max(4, space.budget.trials // 4),
                                          multivariate=True, constant_liar=True)
    if s.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.startup_trials or max(4, space.budget.trials // 4))
    if s.kind == "grid":  # the grid itself is enqueued by run_search; the sampler only fills gaps
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler.kind: {s.kind!r} is not known")  # unreachable: validated by the schema


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's trial: left to that machine
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def finished(trial) -> bool:
    """A trial that counts toward the budget (complete, or a verdict on an impossible/failed sample)."""
    optuna = _optuna()
    if trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        return True
    return trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("verdict") in FINISHED_VERDICTS


def reap_stale(study) -> list[int]:
    """Fail the RUNNING trials of dead local workers and enqueue their parameters again; returns their numbers."""
    optuna = _optuna()
    reaped = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker and not _alive(worker):
            study._storage.set_trial_user_attr(t._trial_id, "verdict", "killed")
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            if t.params:
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            reaped.append(t.number)
    return reaped


def make_pruner(space: Space):
    """Early stopping at the training fidelities (epochs 1, 3, 9, ...) for single-objective accuracy searches."""
    optuna = _optuna()
    prunable = len(space.objectives) == 1 and space.objectives[0].metric == "accuracy" and space.evaluator.kind == "train"
    if not prunable or space.sampler.pruner == "none":
        return optuna.pruners.NopPruner()
    if space.sampler.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=max(2, space.budget.trials // 5), n_warmup_steps=0)


def pruning_callback(trial, space: Space, progress: Optional[Callable[[Any], Any]]) -> Callable[[Any], Optional[bool]]:
    """A training progress callback that reports each fidelity to the trial and stops the run when it should be pruned."""
    single = len(space.objectives) == 1

    def on_event(event: Any) -> Optional[bool]:
        if progress is not None:
            progress(event)
        if single and getattr(event, "kind", None) == "fidelity" and event.top1 is not None:
            trial.report(100.0 * event.top1, step=event.epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", event.epoch)
                return True
        return None

    return on_event


def make_storage(url: str):
    """An Optuna storage from a URL: any RDB URL (sqlite:///, postgresql://...) or journal:///path/to/file.log."""
    optuna = _optuna()
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal://"):]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    return url


def open_study(space: Space, run_dir: Path, storage: Optional[str] = None, offset: int = 0):
    """Create or load the study of a space (same name, same directions)."""
    optuna = _optuna()
    url = make_storage(storage or default_storage(run_dir))
    study = optuna.create_study(study_name=space.name, storage=url, directions=space.directions,
                                sampler=make_sampler(space, offset), pruner=make_pruner(space), load_if_exists=True)
    if [d.name.lower() for d in study.directions] != space.directions:
        raise ValueError(f"storage: study {space.name!r} exists with other objectives; use another --run-dir or --storage")
    return study


def _enqueue_grid(study, space: Space) -> None:
    """Enqueue every grid point not yet finished, running or waiting (in grid order)."""
    import itertools

    optuna = _optuna()
    g = grid(space)
    seen = {json.dumps(t.params, sort_keys=True) for t in study.get_trials(deepcopy=False)
            if finished(t) or t.state in (optuna.trial.TrialState.RUNNING,)}
    waiting = {json.dumps(t.system_attrs.get("fixed_params", {}), sort_keys=True)
               for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))}
    for combo in itertools.product(*g.values()):
        params = dict(zip(g.keys(), combo))
        key = json.dumps(params, sort_keys=True)
        if key not in seen and key not in waiting:
            study.enqueue_trial(params)


def rows_and_specs(study) -> tuple[list[dict], dict[str, dict]]:
    """Trial rows for trials.csv and the spec of every evaluated architecture."""
    rows, specs = [], {}
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        row = {"number": t.number, "state": t.state.name, "verdict": a.get("verdict"), "reason": a.get("reason"),
               "spec_hash": a.get("spec_hash"), "cached_from": a.get("cached_from"), "retry_of": a.get("retry_of"), "reference": a.get("reference"),
               "seconds": round(a["seconds"], 3) if "seconds" in a else None, "params": json.dumps(t.params, sort_keys=True)}
        row.update(a.get("values", {}))
        rows.append(row)
        if a.get("spec") and a.get("spec_hash"):
            specs[a["spec_hash"]] = a["spec"]
    return rows, specs


def _record(study, trial, out: Outcome, **extra: Any) -> None:
    attrs = {"verdict": out.verdict, "reason": out.reason, "spec_hash": out.spec_hash, "values": out.values,
             "cost": out.cost, "seconds": out.seconds, "seed": out.seed, **extra}
    if out.spec is not None:
        attrs["spec"] = out.spec
    if out.latency is not None:
        attrs["latency"] = out.latency
    if out.accuracy is not None:
        attrs["accuracy"] = {k: v for k, v in out.accuracy.items() if k != "budget"}
    for k, v in attrs.items():
        if v is not None:
            trial.set_user_attr(k, v)


def study_calibration(study: Any, space: Space) -> Any:
    """The study's latency calibration: read from its user attributes, or measured once and stored there.

    Every trial of a study, across resumes and workers sharing the storage, then reports latency
    in the same unit, so machine-speed drift between trials does not reorder the front. Two
    workers starting at the same moment may both calibrate; the value stored last wins and both
    re-read it.
    """
    stored = study.user_attrs.get("latency_calibration")
    cal = latency_calibration(space, stored)
    if cal is None:
        return None
    if stored != cal.model_dump(mode="json"):
        study.set_user_attr("latency_calibration", cal.model_dump(mode="json"))
        cal = latency_calibration(space, study.user_attrs.get("latency_calibration"))
    return cal


def run_search(
    space: Space,
    run_dir: Path,
    *,
    storage: Optional[str] = None,
    trials: Optional[int] = None,
    timeout_s: Optional[float] = None,
    progress: Optional[Any] = None,
    on_result: Optional[Callable[[list[dict], dict], None]] = None,
) -> dict[str, Any]:
    """Run (or resume) the search until ``trials`` trials have finished; results are written after every trial."""
    optuna = _optuna()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = trials or space.budget.trials
    timeout_s = timeout_s if timeout_s is not None else space.budget.timeout_s
    probe = open_study(space, run_dir, storage)
    done0 = sum(finished(t) for t in probe.get_trials(deepcopy=False))
    study = open_study(space, run_dir, storage, offset=done0)
    reaped = reap_stale(study)
    ekey = evaluator_key(space)
    base_edit = editable(base_spec(space))
    calibration = study_calibration(study, space)
    if space.enqueue_base and not study.get_trials(deepcopy=False):
        values = base_values(space)
        if values is not None:
            study.enqueue_trial(values, user_attrs={"reference": "base"})
    if space.sampler.kind == "grid":
        _enqueue_grid(study, space)
    cache: dict[str, tuple[int, dict]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.user_attrs.get("evaluator_key") == ekey and t.user_attrs.get("spec_hash"):
            key = f"{t.user_attrs['spec_hash']}:{t.user_attrs.get('seed', space.seed)}"
            cache.setdefault(key, (t.number, t.user_attrs.get("values", {})))
    start = time.monotonic()
    n_done = sum(finished(t) for t in study.get_trials(deepcopy=False))
    if progress is not None:
        progress.start(target, n_done, reaped)
    while n_done < target:
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            break
        trial = study.ask()
        trial.set_user_attr("worker", _worker_id())
        trial.set_user_attr("evaluator_key", ekey)
        values = suggest(trial, space)
        out = prepare(space, values, base_edit)
        state = optuna.trial.TrialState.FAIL
        if out.verdict == "complete" and out.cache_key in cache:
            number, cached = cache[out.cache_key]
            out.values = dict(cached)
            _record(study, trial, out, cached_from=number)
            study.tell(trial, out.objective_values(space))
        else:
            if out.verdict == "complete":
                if progress is not None:
                    progress.trial_started(trial.number, out)
                out = measure(space, out, pruning_callback(trial, space, progress.train_event if progress is not None else None),
                              calibration)
            _record(study, trial, out)
            if out.verdict == "complete":
                cache[out.cache_key] = (trial.number, out.values)
                study.tell(trial, out.objective_values(space))
            else:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED if out.verdict == "pruned" else state)
        n_done += 1
        rows, specs = rows_and_specs(study)
        summary = write_results(run_dir, space, rows, specs)
        if progress is not None:
            progress.trial_done(trial.number, out, summary)
        if on_result is not None:
            on_result(rows, summary)
    rows, specs = rows_and_specs(study)
    summary = write_results(run_dir, space, rows, specs)
    summary["reaped"] = reaped
    if progress is not None:
        progress.stop()
    return summary
