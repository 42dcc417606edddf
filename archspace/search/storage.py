"""Optuna storages for searches: URL checks, heartbeats on RDB and journal files, read-only opening.

Crash recovery uses Optuna's own mechanism: a storage with ``heartbeat_interval`` and
``grace_period``, ``optuna.storages.fail_stale_trials`` (called by ``study.optimize`` before each
trial) and a failed-trial callback that enqueues a retry. RDB storages (SQLite, PostgreSQL, MySQL)
have it built in; :class:`HeartbeatJournalStorage` gives a journal file the same interface, with
the heartbeat kept as a trial system attribute.
"""
from __future__ import annotations

import datetime
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


def _journal_base():
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat

    return JournalStorage, BaseHeartbeat


def _make_journal_class():
    JournalStorage, BaseHeartbeat = _journal_base()

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """A journal-file storage with Optuna's heartbeat interface (heartbeats as trial system attributes)."""

        def __init__(self, backend: Any, heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                     stale_callback: Optional[Callable] = None) -> None:
            super().__init__(backend)
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period
            self.stale_callback = stale_callback

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            from optuna.trial import TrialState

            now = time.time()
            grace = self.grace_period or 2 * (self.heartbeat_interval or 60)
            stale = []
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                beat = t.system_attrs.get(HEARTBEAT_ATTR)
                if beat is None and t.datetime_start is not None:
                    beat = t.datetime_start.replace(tzinfo=t.datetime_start.tzinfo or datetime.timezone.utc).timestamp()
                if beat is not None and now - float(beat) > grace:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> Optional[int]:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self) -> Optional[Callable]:
            return self.stale_callback

    return HeartbeatJournalStorage


def open_storage(url: str, *, heartbeat_s: Optional[int] = None, grace_s: Optional[int] = None,
                 stale_callback: Optional[Callable] = None, create: bool = True) -> Any:
    """An Optuna storage for ``url``; with ``create=False`` nothing is created (a missing study file is a SpecError)."""
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
        return _make_journal_class()(JournalFileBackend(str(path)), heartbeat_s, grace_s, stale_callback)
    engine_kwargs: dict[str, Any] = {}
    if kind == "sqlite":  # several workers on one SQLite file wait for the lock instead of failing
        engine_kwargs["connect_args"] = {"timeout": 120}
        path.parent.mkdir(parents=True, exist_ok=True)

    def make() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=not create,
                                              heartbeat_interval=heartbeat_s, grace_period=grace_s,
                                              heartbeat_stale_trial_callback=stale_callback)

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
