"""The Optuna engine: workers sharing one storage run trials until the study holds exactly the budget.

Every worker (a process started with the same ``--storage``, or one of ``--workers N``) runs this
loop. The budget is counted from the storage, not per process, and by a trial's Optuna state first
(:func:`trial_status`): a trial *ends* when it is COMPLETE or PRUNED, or FAIL with a verdict of its
own (invalid, infeasible, failed, or crashed too often); a FAIL trial with any other verdict was
killed and never counts, whatever it had recorded before its worker died. Each trial runs through
``study.optimize(n_trials=1)``, so Optuna keeps its heartbeat and fails trials whose worker died;
before failing one, the storage calls :func:`mark_killed`, which enqueues its retry (at most
``max_retries`` times along its chain) and writes its verdict and reason over its partial record.
A trial that finds the budget already taken by lower-numbered trials (two workers asked at once),
or a retry of a trial that ended after all, ends as ``surplus`` without running and is not counted
or listed. A worker that finds the budget met waits until no trial is RUNNING (a stopped heartbeat
is failed after its grace period) and retires retries left WAITING, so the study's books balance.
Results of an architecture already evaluated under the same evaluator (spec hash + seed) are looked
up in the storage, and a worker waits for an identical architecture that another worker is
evaluating instead of training it twice.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..spec.errors import SpecError
from .space import Space, base_spec, base_values, editable, grid, suggest
from .storage import check_url, fail_stale, open_storage
from .records import crashed, encode, row
from .store import write_results
from .trial import Outcome, evaluator_key, latency_calibration, run_trial, screen, settle_constraints

SURPLUS = "surplus"
KILLED = "killed"
OWN_FAIL_VERDICTS = ("invalid", "infeasible", "failed")  # verdicts a FAIL trial ended with itself (others: killed)
CONSTRAINTS_KEY = "constraints"  # Optuna's trial system attribute for constraint values (feasible at <= 0)


class TrialFailed(Exception):
    """Raised inside the objective to end a trial as FAIL (its verdict and reason are already recorded)."""


def _optuna():
    import optuna

    return optuna


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial log lines off while a search runs (its FAIL warnings repeat our own reasons); restored after."""
    logger = logging.getLogger("optuna")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def default_storage(run_dir: Path) -> str:
    """SQLite file in the run directory."""
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def make_sampler(space: Space, seed: Optional[int] = None):
    """The Optuna sampler a space asks for, with this worker's seed."""
    optuna = _optuna()
    s, seed = space.sampler, space.seed if seed is None else seed
    if s.kind == "nsga2":
        pop = s.population_size or max(4, min(50, space.budget.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=pop, seed=seed)
    if s.kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.startup_trials or max(4, space.budget.trials // 4),
                                          multivariate=True, constant_liar=True)
    if s.kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.startup_trials or max(4, space.budget.trials // 4))
    return optuna.samplers.RandomSampler(seed=seed)  # random; grid: the grid is enqueued, the sampler fills gaps


def worker_seed(space: Space, done: int, worker_index: Optional[int], shared: bool) -> int:
    """This worker's sampler seed: the space's seed (offset by finished trials, so a resume samples anew) for the
    first worker; other ``--workers`` indices, and any worker on a user-given shared storage, get their own."""
    if worker_index is None and not shared:
        worker_index = 0
    if worker_index == 0:
        return space.seed + done
    token = f"{space.seed}:{done}:{worker_index}:{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    return int(hashlib.sha256(token.encode()).hexdigest()[:8], 16)


def make_pruner(space: Space):
    """Early stopping at the training fidelities (epochs 1, 3, 9, ...) for single-objective accuracy searches."""
    optuna = _optuna()
    prunable = len(space.objectives) == 1 and space.objectives[0].metric == "accuracy" and space.evaluator.kind == "train"
    if not prunable or space.sampler.pruner == "none":
        return optuna.pruners.NopPruner()
    if space.sampler.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=max(2, space.budget.trials // 5), n_warmup_steps=0)


def mark_killed(max_retries: int) -> Callable[[Any, int, Any], None]:
    """Storage hook on a stale trial, before the heartbeat fails it: enqueue its retry (at most ``max_retries`` along its
    chain), then write its verdict (``killed``, or ``failed`` when out of retries) and reason over its partial record."""

    def mark(storage: Any, study_id: int, trial: Any) -> None:
        a = trial.user_attrs
        if a.get("verdict") == SURPLUS:
            return  # ending as surplus already: nothing ran, nothing to retry
        params = trial.params or trial.system_attrs.get("fixed_params") or {}
        crashes = int(a.get("retries", 0)) + 1
        if crashes > max_retries:
            verdict, reason = crashed(crashes, max_retries)
        elif not params:
            verdict, reason = crashed(crashes, max_retries, "nothing to retry", cause="worker died before sampling")
        else:
            verdict, reason = crashed(crashes, max_retries, f"retried as trial {_enqueue_retry(storage, study_id, trial, params)}")
        for key, value in {"verdict": verdict, "reason": reason, "values": {}}.items():
            storage.set_trial_user_attr(trial._trial_id, key, value)

    return mark


def _enqueue_retry(storage: Any, study_id: int, trial: Any, params: dict) -> int:
    """The number of the trial's retry: one already enqueued (by another worker reaping it), else a new WAITING one."""
    key = f"retry:{trial.number}"
    for t in storage.get_all_trials(study_id, deepcopy=False):
        if t.user_attrs.get("enqueued") == key:
            return t.number
    attrs = {"retry_of": trial.number, "retries": int(trial.user_attrs.get("retries", 0)) + 1, "enqueued": key}
    if trial.user_attrs.get("reference"):
        attrs["reference"] = trial.user_attrs["reference"]
    template = _optuna().trial.create_trial(state=_optuna().trial.TrialState.WAITING,
                                            system_attrs={"fixed_params": params}, user_attrs=attrs)
    return storage.get_trial_number_from_id(storage.create_new_trial(study_id, template_trial=template))


def trial_status(t: Any, max_retries: int) -> str:
    """'ended' (counts toward the budget), 'running', 'waiting', 'retried' (killed, not counted) or 'surplus'; read
    from the Optuna state first, so a result recorded but never told (its worker died) is never counted."""
    state = t.state.name
    if state in ("RUNNING", "WAITING"):
        return state.lower()
    if state in ("COMPLETE", "PRUNED"):
        return "ended"
    verdict = t.user_attrs.get("verdict")
    if verdict == SURPLUS:
        return SURPLUS
    if verdict in OWN_FAIL_VERDICTS:
        return "ended"
    return "ended" if int(t.user_attrs.get("retries", 0)) >= max_retries else "retried"


def finished(trial: Any, max_retries: int = 2) -> bool:
    """A trial that counts toward the budget."""
    return trial_status(trial, max_retries) == "ended"


def budget_target(space: Space) -> int:
    """How many ended trials finish a search: the space's budget; a grid search ends with its grid."""
    target = space.budget.trials
    return min(target, len(enqueued_points(space))) if space.sampler.kind == "grid" else target


@dataclass
class Census:
    ended: int = 0
    running: int = 0
    waiting: int = 0


def census(trials: list, max_retries: int) -> Census:
    c = Census()
    for t in trials:
        s = trial_status(t, max_retries)
        if s in ("ended", "running", "waiting"):
            setattr(c, s, getattr(c, s) + 1)
    return c


def open_study(space: Space, run_dir: Path, storage: Optional[str] = None, *, create: bool = True):
    """Create (or, with ``create=False``, only load) the study of a space; SpecError naming the fix when it cannot."""
    optuna = _optuna()
    url = storage or default_storage(run_dir)
    w = space.workers
    st = open_storage(url, heartbeat_s=w.heartbeat_s, grace_s=w.grace_s, mark_stale=mark_killed(w.max_retries),
                      create=create)
    with quiet_optuna():
        if create:
            study = optuna.create_study(study_name=space.name, storage=st, directions=space.directions, load_if_exists=True)
        else:
            try:
                study = optuna.load_study(study_name=space.name, storage=st)
            except KeyError:
                raise SpecError(f"--storage: no study named {space.name!r} there (nothing was changed; check --storage)") from None
    if [d.name.lower() for d in study.directions] != space.directions:
        raise SpecError(f"--storage: study {space.name!r} exists with other objectives; use another --run-dir or --storage")
    if create and "space" not in study.user_attrs:  # the study explains itself (optuna-dashboard, archspace.results)
        from .results import protocol_words

        with contextlib.suppress(Exception):  # workers starting together: one of them writes it
            study.set_user_attr("space", space.model_dump(mode="json"))
            study.set_user_attr("protocol", protocol_words(space))
            if space.constraints.names:
                study.set_user_attr("constraints", [f"{n}: value / {getattr(space.constraints, n):g} - 1"
                                                    for n in space.constraints.names])
    return study


def enqueued_points(space: Space) -> list[tuple[dict, dict]]:
    """The (params, user attrs) enqueued when a study is new: the base network, then every grid point of a grid
    search; a grid point that is the base is enqueued once, first, as the reference base."""
    if space.sampler.by:  # a population: its planned members only (the base is a member when it is drawn)
        from .population import points as population

        return population(space)
    points: list[tuple[dict, dict]] = []
    base = base_values(space) if space.enqueue_base else None
    if space.sampler.kind == "grid":
        import itertools

        g = grid(space)
        for combo in itertools.product(*g.values()):
            params = dict(zip(g.keys(), combo))
            attrs = {"enqueued": "grid:" + json.dumps(params, sort_keys=True)}
            if params == base:
                points.insert(0, (params, {"reference": "base", **attrs}))
                base = None
            else:
                points.append((params, attrs))
    if base is not None:
        points.insert(0, (base, {"reference": "base", "enqueued": "base"}))
    return points


def _enqueue_once(study: Any, space: Space) -> None:
    """Enqueue :func:`enqueued_points` when the study is new (a population: its members not enqueued yet, so a
    resume with a larger budget extends the plan); duplicates from racing workers end as surplus."""
    trials = study.get_trials(deepcopy=False)
    if trials and not space.sampler.by:
        return
    present = {t.user_attrs.get("enqueued") for t in trials}
    for params, attrs in enqueued_points(space):
        if attrs["enqueued"] not in present:
            study.enqueue_trial(params, user_attrs=attrs)


def _calibration_candidates(study: Any, space: Space) -> list[tuple[float, str, dict]]:
    """The latency calibrations written to a study that fit the space's protocol, earliest first."""
    from ..measure.latency import Calibration

    attrs = study.user_attrs
    found = [(float(v["at"]), k, v["calibration"]) for k, v in attrs.items() if k.startswith("latency_calibration:")]
    if "latency_calibration" in attrs:  # written by an earlier version: a single value
        found.append((0.0, "latency_calibration", attrs["latency_calibration"]))
    return [c for c in sorted(found, key=lambda c: (c[0], c[1]))
            if Calibration.model_validate(c[2]).fits(space.measure.threads, space.measure.clock)]


def agree_calibration(study: Any, space: Space) -> Any:
    """One latency calibration per study, agreed by every worker: the earliest one written wins.

    Each worker that finds none measures one and writes it under its own key with the time; then
    all read every candidate and use the earliest. A worker that starts later finds the winner
    already there and measures nothing, so all workers report latency in the same unit.
    """
    found = _calibration_candidates(study, space)
    if not found:
        cal = latency_calibration(space, None)
        if cal is None:
            return None
        key = f"latency_calibration:{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        study.set_user_attr(key, {"at": time.time(), "calibration": cal.model_dump(mode="json")})
        found = _calibration_candidates(study, space)
    return latency_calibration(space, found[0][2])


def study_calibration(study: Any, space: Space) -> Any:
    """The calibration a study's trials used, read without writing; a new one when the study holds none that fits
    the space's protocol; None when the space measures no calibrated CPU latency."""
    found = _calibration_candidates(study, space)
    return latency_calibration(space, found[0][2] if found else None)


def rows_and_specs(study: Any, max_retries: int = 2) -> tuple[list[dict], dict[str, dict]]:
    """Trial rows for trials.csv (surplus and waiting trials left out) and the spec of every evaluated architecture."""
    rows, specs = [], {}
    trials = study.get_trials(deepcopy=False)
    retried_as: dict[int, int] = {}
    retired: set[int] = set()  # killed trials whose retry was not needed (the budget was met first)
    for t in trials:
        if "retry_of" in t.user_attrs:
            if trial_status(t, max_retries) == SURPLUS:
                retired.add(t.user_attrs["retry_of"])
            else:
                retried_as.setdefault(t.user_attrs["retry_of"], t.number)
    for t in trials:
        status = trial_status(t, max_retries)
        if status in (SURPLUS, "waiting"):
            continue
        a = t.user_attrs
        verdict, reason, values = a.get("verdict"), a.get("reason"), a.get("values", {})
        if status == "running":
            verdict = "running"
        elif t.state.name == "FAIL" and verdict not in OWN_FAIL_VERDICTS:  # killed: what it recorded is discarded
            values = {}
            retry = (f"retried as trial {retried_as[t.number]}" if t.number in retried_as
                     else "not retried (the budget was met)" if t.number in retired else None)
            verdict, reason = crashed(int(a.get("retries", 0)) + 1, max_retries, retry)
            if retry is None and a.get("verdict") == KILLED and a.get("reason"):
                reason = a["reason"]  # what the worker that reaped it wrote
        record = {**a, "verdict": verdict, "reason": reason, "values": values}
        rows.append(row(t.number, t.state.name, t.params, record, worker=a.get("worker"), reference=a.get("reference"),
                        cached_from=a.get("cached_from"), retry_of=a.get("retry_of")))
        if a.get("spec") and a.get("spec_hash"):
            specs[a["spec_hash"]] = a["spec"]
    return rows, specs


class _Objective:
    """One trial of the worker loop, called by ``study.optimize(n_trials=1)``."""

    def __init__(self, study: Any, space: Space, target: int, calibration: Any, progress: Any, worker: str,
                 turns: Any = None):
        self.study, self.space, self.target, self.calibration, self.turns = study, space, target, calibration, turns
        self.progress, self.worker = progress, worker
        self.ekey = evaluator_key(space)
        self.base = editable(base_spec(space))
        self.max_retries = space.workers.max_retries
        self.outcome: Optional[Outcome] = None
        self.number = -1

    def _earlier(self, number: int) -> list:
        return [t for t in self.study.get_trials(deepcopy=False) if t.number < number]

    def __call__(self, trial: Any) -> Any:
        optuna = _optuna()
        self.outcome, self.number = None, trial.number
        trial.set_user_attr("worker", self.worker)
        before = self._earlier(trial.number)
        earlier = [t for t in before if trial_status(t, self.max_retries) in ("ended", "running")]
        key, origin = trial.user_attrs.get("enqueued"), trial.user_attrs.get("retry_of")
        if (len(earlier) >= self.target or (key and any(t.user_attrs.get("enqueued") == key for t in earlier))
                or (origin is not None and trial_status(before[origin], self.max_retries) == "ended")):
            trial.set_user_attr("verdict", SURPLUS)
            raise TrialFailed(SURPLUS)
        trial.set_user_attr("evaluator_key", self.ekey)
        try:
            out = screen(self.space, suggest(trial, self.space), self.base)
        except Exception as exc:  # noqa: BLE001 - a sample that breaks screening is that trial's failure
            out = Outcome(verdict="failed", reason=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        if out.verdict == "complete":
            trial.set_user_attr("spec_hash", out.spec_hash)
            trial.set_user_attr("cache_key", out.cache_key)
            cached = self._cached(trial, out)
            if cached is not None:
                out.values = dict(cached.user_attrs.get("values", {}))
                for part in ("latency", "accuracy"):  # its records too: the unit its latency is in, its training
                    if cached.user_attrs.get(part) is not None:
                        setattr(out, part, cached.user_attrs[part])
                settle_constraints(self.space, out, final=True)
                self._record(trial, out, cached_from=cached.number)
                return out.objective_values(self.space)
            if self.progress is not None:
                self.progress.trial_started(trial.number, out)
            out = run_trial(self.space, out, self._pruning(trial), self.calibration, self.turns)
        self._record(trial, out)
        if out.verdict == "complete" or (out.verdict == "infeasible" and out.has_objectives(self.space)):
            return out.objective_values(self.space)  # an infeasible one trained anyway is COMPLETE, never on a front
        if out.verdict in ("pruned", "infeasible"):  # infeasible, not trained: PRUNED, so samplers use its constraints
            raise optuna.TrialPruned(out.reason)
        raise TrialFailed(out.reason or out.verdict)

    def _cached(self, trial: Any, out: Outcome) -> Any:
        """A finished trial of the same architecture and evaluator, waiting for one that another worker is running."""
        optuna = _optuna()
        while True:
            same = [t for t in self._earlier(trial.number) if t.user_attrs.get("cache_key") == out.cache_key
                    and t.user_attrs.get("evaluator_key") == self.ekey]
            done = [t for t in same if t.state == optuna.trial.TrialState.COMPLETE and "values" in t.user_attrs]
            if done:
                return done[0]
            if not any(t.state == optuna.trial.TrialState.RUNNING for t in same):
                return None
            fail_stale(self.study)
            time.sleep(min(2.0, self.space.workers.heartbeat_s / 2))

    def _pruning(self, trial: Any) -> Callable[[Any], Optional[bool]]:
        single = len(self.space.objectives) == 1
        progress = self.progress.train_event if self.progress is not None else None

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

    def _record(self, trial: Any, out: Outcome, **extra: Any) -> None:
        for k, v in {**encode(out), **extra}.items():
            trial.set_user_attr(k, v)
        if out.constraints:
            record_constraints(trial, out.constraint_values())
        self.outcome = out


def record_constraints(trial: Any, values: list[float]) -> None:
    """A running trial's Optuna constraint values, in the list form ``constraints_func`` writes: every sampler
    reads it (NSGA-II's constrained domination, TPE's infeasible split, ``study.best_trials``) and so does
    optuna-dashboard (0.21 shows no other form). Written once, before the trial ends."""
    trial.storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_KEY, list(values))


def _retire_retries(study: Any, trials: list) -> bool:
    """End the retries left WAITING once the budget is met as surplus (claimed first, so a worker that popped one
    keeps it); whether there were any. Grid points left WAITING by a smaller budget stay for a resume."""
    optuna = _optuna()
    state, storage = optuna.trial.TrialState, study._storage
    waiting = [t for t in trials if t.state == state.WAITING and "retry_of" in t.user_attrs]
    for t in waiting:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(t._trial_id, state.RUNNING):
                storage.set_trial_user_attr(t._trial_id, "verdict", SURPLUS)
                storage.set_trial_user_attr(t._trial_id, "reason", "the budget was met before this retry ran")
                storage.set_trial_state_values(t._trial_id, state.FAIL)
    return bool(waiting)


def run_worker(
    space: Space,
    run_dir: Path,
    *,
    storage: Optional[str] = None,
    progress: Optional[Any] = None,
    worker_index: Optional[int] = None,
    log: Optional[Any] = None,
) -> dict[str, Any]:
    """One worker's loop: trials until the study holds the space's budget of ended trials (counted over all
    workers) or its ``budget.timeout_s`` passes; returns a summary. A run's overrides go into the space
    (:func:`archspace.jobs.configure`), so the sampler is sized for the budget that runs.

    ``log`` (e.g. :class:`archspace.search.tracking.TensorBoardLog`) gets every trial this worker ran."""
    optuna = _optuna()
    run_dir = Path(run_dir)
    target = budget_target(space)
    timeout_s = space.budget.timeout_s
    if storage:
        check_url(storage)
    study = open_study(space, run_dir, storage)
    max_retries = space.workers.max_retries
    all_trials = study.get_trials(deepcopy=False)
    done0 = census(all_trials, max_retries).ended
    study.sampler = make_sampler(space, worker_seed(space, done0, worker_index, shared=storage is not None))
    study.pruner = make_pruner(space)
    if not study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.key for o in space.objectives])
    _enqueue_once(study, space)
    calibration = agree_calibration(study, space)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    from .turns import Turns

    turns = Turns(run_dir) if space.measure.timed else None  # timing alone, beside this run's other workers
    objective = _Objective(study, space, target, calibration, progress, worker, turns)
    start = time.monotonic()
    if progress is not None:
        progress.start(target, done0)
    summary: dict[str, Any] = {}
    with quiet_optuna():
        while True:
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                break
            now = study.get_trials(deepcopy=False)
            c = census(now, max_retries)
            if c.ended >= target and not c.running and not _retire_retries(study, now):
                break  # nothing RUNNING, no retry WAITING: the books balance
            if c.ended + c.running >= target:  # the rest is running elsewhere: wait, and retry it if its worker dies
                fail_stale(study)  # a stopped heartbeat is failed once its grace period has passed
                time.sleep(min(2.0, space.workers.heartbeat_s / 2))
                continue
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=False)
            out = objective.outcome
            if out is None:
                continue  # surplus: nothing ran
            rows, specs = rows_and_specs(study, max_retries)
            summary = write_results(run_dir, space, rows, specs)
            if progress is not None:
                progress.trial_done(objective.number, out, summary)
            if log is not None:
                log.trial(objective.number, out)
    rows, specs = rows_and_specs(study, max_retries)
    summary = write_results(run_dir, space, rows, specs)
    if progress is not None:
        progress.stop()
    return summary

