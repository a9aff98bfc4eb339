"""The storage classes a search opens, each with the one dead-worker recovery of :mod:`igcnas.nas.lease`.

* :class:`HeartbeatRDBStorage` (SQLite, PostgreSQL, MySQL): Optuna's heartbeat rows judge the trials
  that have them (Optuna's own rule, on the database's clock); a trial without any (its worker died
  before the first beat, or it beats through a gRPC proxy) is judged by its lease and start, which
  closes Optuna's gap of trials orphaned before their first heartbeat. Stale failures whose re-queue
  was lost are found with two queries instead of reading every trial.
* :class:`LeaseJournalStorage`: Optuna's journal file, for many processes on one machine without a
  server; its lock is ``flock`` (:class:`FlockLock`), which the kernel releases when a holder is killed.
* :class:`LeaseGrpcStorage`: a client of ``igc-nas storage-proxy`` (Optuna's gRPC proxy), for more
  workers than one database takes connections from.

Ray trials are left to Ray. Module-level classes so that Ray Tune can pickle the searcher that holds
the storage.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable

import optuna
from optuna.storages import GrpcStorageProxy, JournalStorage
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial

from igcnas.nas.lease import MAX_STALE_RETRIES, StaleTrialRecovery
from igcnas.nas.optuna_adapter import (JournalFileLock, rdb_flagged_failures, rdb_running_with_heartbeat,
                                       rdb_stale_ids)
from igcnas.nas.records import SystemKey

__all__ = ["HeartbeatRDBStorage", "LeaseJournalStorage", "LeaseGrpcStorage", "FlockLock", "MAX_STALE_RETRIES"]

log = logging.getLogger(__name__)

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class HeartbeatRDBStorage(StaleTrialRecovery, optuna.storages.RDBStorage):
    """Optuna's RDB storage, its heartbeat kept, judged and repaired by the one recovery rule."""

    def record_heartbeat(self, trial_id: int) -> None:
        optuna.storages.RDBStorage.record_heartbeat(self, trial_id)
        self._renew_lease(trial_id)  # for workers that share the study through a gRPC proxy

    def _own_verdicts(self, study_id: int) -> dict[int, bool]:
        """RUNNING trials with a heartbeat row -> whether Optuna finds that row stale."""
        stale = rdb_stale_ids(self, study_id)
        return {trial_id: trial_id in stale for trial_id in rdb_running_with_heartbeat(self, study_id)}

    def _stale_failures(self, study_id: int) -> tuple[list[tuple[int, int]], set[int]]:
        return rdb_flagged_failures(self, study_id, SystemKey.STALE, SystemKey.RETRY_HISTORY)


class LeaseJournalStorage(StaleTrialRecovery, JournalStorage):
    """Optuna's journal storage, which has no heartbeat of its own: trials beat with the lease."""

    def __init__(self, backend: BaseJournalBackend, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, heartbeat_stale_trial_callback: StaleCallback | None = None) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback


class LeaseGrpcStorage(StaleTrialRecovery, GrpcStorageProxy):
    """Optuna's gRPC proxy client, which carries no heartbeat: trials beat with the lease."""

    def __init__(self, *, host: str, port: int, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, heartbeat_stale_trial_callback: StaleCallback | None = None) -> None:
        super().__init__(host=host, port=port)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback


class FlockLock(JournalFileLock):
    """The journal's write lock as ``flock`` on ``PATH.lock``.

    Optuna's default lock is a symlink that a killed holder leaves behind, stalling every other
    worker for its 30 s grace period; the kernel drops an flock with its holder. Needs a file
    system with working locks (local disks; NFSv4).
    """

    def __init__(self, journal_path: str) -> None:
        self._path = journal_path + ".lock"
        self._held = threading.local()

    def __getstate__(self) -> dict[str, Any]:  # pickled with its storage (Ray): a lock is never held across
        return {"_path": self._path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["_path"]
        self._held = threading.local()

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held.fd = fd
        return True

    def release(self) -> None:
        fd = getattr(self._held, "fd", None)
        if fd is not None:
            self._held.fd = None
            os.close(fd)  # closing the last descriptor of the open file drops the lock
