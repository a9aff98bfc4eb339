"""Every use of Optuna's private internals, behind one typed interface.

Optuna's public API has no study or trial id, no incremental read of a study, no hook for a storage's
own stale-trial rule and no public name for the journal file lock, the gRPC proxy's servicer or the
hypervolume; the search needs all of them. They are reached here and nowhere else
(``tests/test_layout.py`` fails on a private Optuna or Ray name in any other module of ``igcnas``), so
that an Optuna upgrade that moves one breaks this module and its contract test
(``tests/nas/test_optuna_adapter.py``, run over every storage kind), not a search far away.
``pyproject.toml`` bounds Optuna to the releases this was tested with.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import optuna
from optuna.storages import BaseStorage, GrpcStorageProxy, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.trial import FrozenTrial, TrialState

__all__ = ["CONSTRAINTS_KEY", "JournalFileLock", "StaleTrialHook", "storage_of", "study_id_of", "trial_id_of",
           "set_trial_system_attr", "set_constraints", "read_by_number", "rdb_stale_ids",
           "rdb_running_with_heartbeat", "rdb_flagged_failures", "add_proxy_servicer", "compute_hypervolume"]

# The system attribute holding a trial's constraints as a list, and the prefix of the per-name form
# (optuna.study._constrained_optimization._CONSTRAINTS_KEY): the list is what optuna-dashboard reads.
CONSTRAINTS_KEY = "constraints"

# Optuna's base class of a journal file lock (public classes derive from it; the base is not exported).
JournalFileLock = BaseJournalFileLock


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage object a study reads and writes through."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The storage's id of a study (what every storage method takes)."""
    return int(study._study_id)


def trial_id_of(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (unique across studies; its number is unique within one)."""
    return int(trial._trial_id)


def set_trial_system_attr(study: optuna.Study, trial: optuna.Trial | FrozenTrial, key: str, value: Any) -> None:
    """Write one system attribute of a trial (Optuna's Trial has no public setter since 4.0)."""
    storage_of(study).set_trial_system_attr(trial_id_of(trial), key, value)


def set_constraints(trial: optuna.Trial, new: Mapping[str, float], ordered: Sequence[float]) -> None:
    """Write the constraints ``new`` (not yet recorded) in Optuna's per-name form, and the list form.

    ``trial.set_constraint`` reads every system attribute of the trial back from the storage before
    each write (a query per attribute table on a database); the caller knows what it recorded, so the
    names are written directly, in the same form.
    """
    storage, trial_id = trial.storage, trial_id_of(trial)
    for key, value in new.items():
        storage.set_trial_system_attr(trial_id, f"{CONSTRAINTS_KEY}:{key}", float(value))
    if ordered:
        storage.set_trial_system_attr(trial_id, CONSTRAINTS_KEY, list(ordered))


def _pick(by_number: Mapping[int, FrozenTrial] | Sequence[FrozenTrial], start: int,
          unfinished: Iterable[int]) -> list[FrozenTrial]:
    """From a store of trials keyed (or indexed) by number 0 to n - 1: those in ``unfinished`` below
    ``start``, then every one from ``start`` on, by number."""
    size = len(by_number)
    out = [by_number[n] for n in sorted(unfinished) if n < start]  # type: ignore[call-overload]
    out.extend(by_number[n] for n in range(start, size))  # type: ignore[call-overload]
    return out


def read_by_number(storage: BaseStorage, study_id: int, start: int, unfinished: Iterable[int]
                   ) -> list[FrozenTrial] | None:
    """The trials numbered in ``unfinished`` below ``start`` and every trial from ``start`` on, synced.

    Optuna's storages keep a per-process copy of a study's trials, synced incrementally; asking them
    for all trials still sorts and copies the whole list, so for the cached RDB, gRPC-proxy, journal
    and in-memory storages the trials are picked out of that copy by number. None for any other
    storage: the caller reads every trial through the public API. Raises AttributeError, KeyError or
    IndexError when the copy is not what this Optuna release keeps (the caller falls back too).
    """
    if isinstance(storage, _CachedStorage):  # an RDB storage (SQLite, PostgreSQL, MySQL)
        storage._read_trials_from_remote_storage(study_id)
        with storage._lock:
            return _pick(storage._studies[study_id].trials, start, unfinished)
    if isinstance(storage, GrpcStorageProxy):
        cache = storage._cache
        with cache.lock:
            cache._read_trials_from_remote_storage(study_id)
            return _pick(cache.studies[study_id].trials, start, unfinished)
    if isinstance(storage, JournalStorage):
        with storage._thread_lock:
            storage._sync_with_backend()
            replay = storage._replay_result
            ids, by_id = replay._study_id_to_trial_ids[study_id], replay._trials
            return ([by_id[ids[n]] for n in sorted(unfinished) if n < start]
                    + [by_id[trial_id] for trial_id in ids[start:]])
    if isinstance(storage, InMemoryStorage):
        with storage._lock:
            return _pick(storage._studies[study_id].trials, start, unfinished)
    return None


class StaleTrialHook(BaseHeartbeat):
    """Optuna's heartbeat contract, its private stale-trial hook forwarded to :meth:`stale_trial_ids`.

    Optuna's ``fail_stale_trials`` asks a storage for its stale trials through a private method; a
    storage deriving from this class answers through the public name instead.
    """

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self.stale_trial_ids(study_id)

    def stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials of the study whose worker is gone (Optuna fails them, then retries them)."""
        raise NotImplementedError


def rdb_stale_ids(storage: RDBStorage, study_id: int) -> set[int]:
    """The RUNNING trials Optuna's own heartbeat rule finds stale on an RDB storage (by the database's clock)."""
    return set(RDBStorage._get_stale_trial_ids(storage, study_id))


def rdb_running_with_heartbeat(storage: RDBStorage, study_id: int) -> list[int]:
    """Ids of the study's RUNNING trials that have an Optuna heartbeat row (one query)."""
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        rows = (session.query(models.TrialHeartbeatModel.trial_id)
                .join(models.TrialModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING)
                .all())
    finally:
        session.close()
    return [trial_id for (trial_id,) in rows]


def rdb_flagged_failures(storage: RDBStorage, study_id: int, flag: str, history: str
                         ) -> tuple[list[tuple[int, int]], set[int]]:
    """(trial id, number) of the study's FAILED trials with system attribute ``flag``, and every number
    listed in any trial's ``history`` system attribute (a JSON list), in two queries."""
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        in_study = models.TrialModel.study_id == study_id
        failed = (session.query(models.TrialModel.trial_id, models.TrialModel.number)
                  .join(models.TrialSystemAttributeModel,
                        models.TrialSystemAttributeModel.trial_id == models.TrialModel.trial_id)
                  .filter(in_study, models.TrialModel.state == TrialState.FAIL,
                          models.TrialSystemAttributeModel.key == flag)
                  .all())
        if not failed:
            return [], set()
        histories = (session.query(models.TrialSystemAttributeModel.value_json)
                     .join(models.TrialModel, models.TrialSystemAttributeModel.trial_id == models.TrialModel.trial_id)
                     .filter(in_study, models.TrialSystemAttributeModel.key == history)
                     .all())
    finally:
        session.close()
    return [(t, n) for t, n in failed], {number for (value,) in histories for number in json.loads(value)}


def add_proxy_servicer(storage: BaseStorage, server: Any) -> None:
    """Serve ``storage`` on the gRPC ``server`` with Optuna's storage-proxy servicer (its wire protocol)."""
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)


def compute_hypervolume(points: np.ndarray, reference: np.ndarray, *, assume_pareto: bool = False) -> float:
    """The hypervolume of ``points`` (minimisation) below ``reference``: Optuna's exact algorithm."""
    from optuna._hypervolume import compute_hypervolume as hypervolume

    return float(hypervolume(points, reference, assume_pareto=assume_pareto))
