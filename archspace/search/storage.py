"""Optuna storages for searches: URL checks, heartbeats on RDB and journal files, read-only opening.

Crash recovery uses Optuna's own mechanism: a storage with ``heartbeat_interval`` and
``grace_period``, and ``optuna.storages.fail_stale_trials`` (called by ``study.optimize`` before each
trial, and by :func:`fail_stale`). RDB storages (SQLite, PostgreSQL, MySQL) have it built in;
:class:`HeartbeatJournalStorage` gives a journal file the same interface, with the heartbeat kept as
a trial system attribute. Both call ``mark_stale(storage, study_id, trial)`` on each stale trial
*before* it is failed (while it can still be written), so a failed trial carries its own verdict and
reason in the storage; a trial killed before its first heartbeat is stale once its grace has passed
since it started.
"""
from __future__ import annotations

import datetime
import functools
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from ..spec.errors import SpecError

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
HEARTBEAT_ATTR = "archspace:heartbeat"
_URL = re.compile(r"^([a-z][a-z0-9+]*)://(.*)$")


def check_url(url: str) -> str:
    """The storage kind of a URL ('sqlite', 'postgresql', 'mysql' or 'journal'); SpecError naming the fix otherwise."""
    m = _URL.match(url or "")
    kind = m.group(1).split("+")[0] if m else None
    if kind not in (*RDB_SCHEMES, "journal"):
        raise SpecError(f"--storage: {url!r} is not a storage URL (use sqlite:///FILE, postgresql://USER@HOST/DB or journal:///FILE)")
    if kind in ("sqlite", "journal") and not m.group(2).startswith("/"):
        raise SpecError(f"--storage: {url!r} needs a path after {kind}:// (e.g. {kind}:///runs/study.{'db' if kind == 'sqlite' else 'log'})")
    return kind


def local_path(url: str) -> Optional[Path]:
    """The file behind a sqlite:/// or journal:/// URL (None for server storages)."""
    kind = check_url(url)
    if kind in ("sqlite", "journal"):
        return Path(_URL.match(url).group(2)[1:] if kind == "sqlite" else _URL.match(url).group(2))
    return None


def _marked(storage: Any, study_id: int, ids: list[int]) -> list[int]:
    """The stale trials to fail, each given its verdict first; one that ended meanwhile is left alone."""
    from optuna.exceptions import UpdateFinishedTrialError

    if storage.mark_stale is None:
        return ids
    out = []
    for trial_id in ids:
        try:
            storage.mark_stale(storage, study_id, storage.get_trial(trial_id))
        except UpdateFinishedTrialError:
            continue  # its worker was alive after all and told it, or another worker failed it first
        out.append(trial_id)
    return out


def _grace(storage: Any) -> float:
    return storage.grace_period or 2 * (storage.heartbeat_interval or 60)


def _started_before(trial: Any, seconds: float) -> bool:
    """A trial that started more than ``seconds`` ago (its start is a naive local time in both storages)."""
    return trial.datetime_start is not None and (datetime.datetime.now() - trial.datetime_start).total_seconds() > seconds


@functools.cache
def _journal_class() -> type:
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """A journal-file storage with Optuna's heartbeat interface (heartbeats as trial system attributes)."""

        def __init__(self, backend: Any, heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                     stale_callback: Optional[Callable] = None, mark_stale: Optional[Callable] = None) -> None:
            super().__init__(backend)
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period
            self.stale_callback = stale_callback
            self.mark_stale = mark_stale

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now, grace, stale = time.time(), _grace(self), []
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                beat = t.system_attrs.get(HEARTBEAT_ATTR)
                if (now - float(beat) > grace) if beat is not None else _started_before(t, grace):
                    stale.append(t._trial_id)
            return _marked(self, study_id, stale)

        def get_heartbeat_interval(self) -> Optional[int]:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self) -> Optional[Callable]:
            return self.stale_callback

    return HeartbeatJournalStorage


@functools.cache
def _rdb_class() -> type:
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState

    class HeartbeatRDBStorage(RDBStorage):
        """Optuna's RDB storage, whose stale trials also include those killed before their first heartbeat."""

        mark_stale: Optional[Callable] = None

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            stale = super()._get_stale_trial_ids(study_id)  # RUNNING trials whose last heartbeat is older than the grace
            with _create_scoped_session(self.scoped_session) as session:
                beating = {tid for (tid,) in session.query(models.TrialHeartbeatModel.trial_id)
                           .join(models.TrialModel).filter(models.TrialModel.study_id == study_id)}
            stale += [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                      if t._trial_id not in beating and t._trial_id not in stale and _started_before(t, _grace(self))]
            return _marked(self, study_id, stale)

    return HeartbeatRDBStorage


def fail_stale(study: Any) -> None:
    """Optuna's ``fail_stale_trials`` on a study (each stale trial marked, failed, its callback run); archspace uses
    this experimental function on purpose, so its ExperimentalWarning is silenced here."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def open_storage(url: str, *, heartbeat_s: Optional[int] = None, grace_s: Optional[int] = None,
                 stale_callback: Optional[Callable] = None, mark_stale: Optional[Callable] = None,
                 create: bool = True) -> Any:
    """An Optuna storage for ``url``; with ``create=False`` nothing is created (a missing study file is a SpecError).

    With ``heartbeat_s``, ``mark_stale(storage, study_id, trial)`` is called on each stale trial before it is failed."""
    import optuna

    kind = check_url(url)
    path = local_path(url)
    if not create and path is not None and not path.exists():
        raise SpecError(f"--storage: {path} does not exist (nothing was created; check the path)")
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        path.parent.mkdir(parents=True, exist_ok=True)
        if heartbeat_s is None:  # a plain (picklable) journal storage
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        return _journal_class()(JournalFileBackend(str(path)), heartbeat_s, grace_s, stale_callback, mark_stale)
    engine_kwargs: dict[str, Any] = {}
    if kind == "sqlite":  # several workers on one SQLite file wait for the lock instead of failing
        engine_kwargs["connect_args"] = {"timeout": 120}
        path.parent.mkdir(parents=True, exist_ok=True)

    def make() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kind = optuna.storages.RDBStorage if heartbeat_s is None else _rdb_class()
            st = kind(url, engine_kwargs=engine_kwargs, skip_table_creation=not create, heartbeat_interval=heartbeat_s,
                      grace_period=grace_s, heartbeat_stale_trial_callback=stale_callback)
            if heartbeat_s is not None:
                st.mark_stale = mark_stale
            return st

    for attempt in range(5):
        try:
            return make()
        except ImportError as exc:
            raise SpecError(f"--storage: {url.split('://')[0]} needs a database driver ({exc}); "
                            "for PostgreSQL: pip install 'archspace[postgres]'") from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many types for unreachable servers
            text = " ".join(str(exc).split())
            # workers that start together on a new database race to create its tables: the losers try again
            if attempt < 4 and any(k in text.lower() for k in ("already exists", "duplicate key", "unique constraint")):
                time.sleep(0.5 + attempt)
                continue
            raise SpecError(f"--storage: cannot open {_redact(url)} ({text[:200]})") from None


def _redact(url: str) -> str:
    """The URL without a password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
