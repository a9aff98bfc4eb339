"""Dead-worker recovery, the same on every storage: one liveness rule, one STALE mark, one re-queue.

A worker killed by SIGKILL, the OOM killer or a lost node leaves its trial RUNNING for ever; with
``--total-trials`` that trial holds a slot and the search never ends. Optuna's answer, the heartbeat,
exists only for RDB storages, so journal files and the gRPC proxy get the project's own *lease*: a
system attribute (:data:`SystemKey.LEASE`) holding the wall-clock time of the trial's last beat, written by
Optuna's own heartbeat thread (through :meth:`StaleTrialRecovery.record_heartbeat`) every
``--heartbeat-interval`` seconds while the trial runs. RDB storages keep Optuna's heartbeat rows and
write the lease too, so that workers on the database and workers behind a proxy judge each other's
trials alike.

Before each trial (Optuna's ``fail_stale_trials``, before ``ask``; at most once per heartbeat interval)
a worker finds the RUNNING trials whose worker is gone: the last sign of life (the later of its start
and its lease, or Optuna's heartbeat row where it has one) is older than ``--grace-period``. That covers
a worker killed between taking a trial and its first beat, which Optuna alone never fails. Each is marked
:attr:`SystemKey.STALE` while still RUNNING (so a stale failure can be told from a trial that failed by
its own error), failed by exactly one worker (the storage refuses to finish a finished trial: the
others get ``UpdateFinishedTrialError``) and re-queued with the same parameters by that worker, at
most :data:`MAX_STALE_RETRIES` times. A worker killed between failing a stale trial and re-queuing it
would lose the trial; a later worker re-queues such a failure once it is older than the grace period.

Ray trials (``backend=ray`` from their first moment, no heartbeat by design) are left to Ray. Leases
compare wall clocks of different machines: keep them in sync (NTP) to well within the grace period.
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
import time
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from igcnas.nas.optuna_adapter import StaleTrialHook, trial_id_of
from igcnas.nas.records import SystemKey, TrialKey, record_of

__all__ = ["MAX_STALE_RETRIES", "RetryStaleTrial", "StaleTrialRecovery"]

log = logging.getLogger(__name__)

# A trial whose worker died this many times in a row is left failed (it may be what kills them).
MAX_STALE_RETRIES = 3
# What a retry must not inherit from the trial it repeats: that trial's stale mark and last beats
# (a worker's lease, a Ray driver's lease).
_NOT_INHERITED = (SystemKey.STALE, SystemKey.LEASE, SystemKey.DRIVER_LEASE)


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's re-queue of a stale trial, without the dead trial's stale mark and lease.

    Optuna copies every system attribute into the retry; an inherited stale mark would make the
    retry look like a stale failure if it later failed by its own error, and an inherited lease is
    a beat of the dead worker, not of the retry's.
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k not in _NOT_INHERITED}
        super().__call__(study, trial)


class StaleTrialRecovery(StaleTrialHook):
    """Mixin of every storage class the project opens: the lease, the liveness rule and the repair.

    The storage sets ``heartbeat_interval`` (None: no beats and no recovery, for read-only use),
    ``grace_period`` and ``heartbeat_stale_trial_callback`` (a :class:`RetryStaleTrial`), the names
    Optuna's RDBStorage uses. Storages with beats of their own override :meth:`_own_verdicts`;
    those that can find stale failures faster than by reading every trial override
    :meth:`_stale_failures`.
    """

    heartbeat_interval: int | None
    grace_period: int | None
    heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self._renew_lease(trial_id)

    def _renew_lease(self, trial_id: int) -> None:
        """Write the lease; never raises, since an exception would end Optuna's heartbeat thread."""
        try:
            self.set_trial_system_attr(trial_id, SystemKey.LEASE, time.time())  # type: ignore[attr-defined]
        except UpdateFinishedTrialError:
            lost: set[int] = self.__dict__.setdefault("_lost_leases", set())
            if trial_id not in lost:  # said once, not at every beat until the trial ends
                lost.add(trial_id)
                log.warning("trial id %d was failed as stale by another worker (this one missed its beats for "
                            "longer than the grace period); its result will not be recorded", trial_id)
        except Exception as exc:  # the storage is briefly unreachable: the next beat tries again
            log.warning("could not renew the lease of trial id %d: %s: %s", trial_id, type(exc).__name__, exc)

    def _grace_seconds(self) -> float:
        return float(self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0))

    def _own_verdicts(self, study_id: int) -> dict[int, bool]:
        """RUNNING trials this storage judges by beats of its own (trial id -> stale); none by default."""
        return {}

    def stale_trial_ids(self, study_id: int) -> list[int]:
        """What Optuna's ``fail_stale_trials`` (before every trial) gets: :meth:`find_stale_trials`, at most once
        per heartbeat interval per storage object and study.

        A trial is found stale only once its last beat is a grace period (several intervals) old, so a look
        more often than a beat finds nothing new; with short trials it would be most of a trial's queries.
        """
        checked: dict[int, float] = self.__dict__.setdefault("_stale_checked", {})
        now = time.monotonic()
        if now - checked.get(study_id, -math.inf) < float(self.heartbeat_interval or 0):
            return []
        checked[study_id] = now
        return self.find_stale_trials(study_id)

    def find_stale_trials(self, study_id: int) -> list[int]:
        """The one recovery rule of every storage.

        Returns the RUNNING trials whose worker is gone, each marked STALE; Optuna then fails them and
        runs the retry callback. Also re-queues stale failures whose re-queue was lost.
        """
        grace = self._grace_seconds()
        now = time.time()
        own = self._own_verdicts(study_id)
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False,  # type: ignore[attr-defined]
                                         states=(TrialState.RUNNING,)):
            if record_of(trial.user_attrs).get(TrialKey.BACKEND) == "ray":
                continue
            verdict = own.get(trial_id_of(trial))
            if verdict is None:
                verdict = now - last_sign_of_life(trial) > grace
            if verdict:
                stale.append(trial_id_of(trial))
        marked = []
        for trial_id in stale:
            try:
                self.set_trial_system_attr(trial_id, SystemKey.STALE, True)  # type: ignore[attr-defined]
                marked.append(trial_id)
            except UpdateFinishedTrialError:
                pass  # another worker failed it meanwhile; it is that worker's to retry
        self._requeue_lost_retries(study_id, grace)
        return marked

    def _stale_failures(self, study_id: int) -> tuple[list[tuple[int, int]], set[int]]:
        """(trial id, number) of every stale failure, and the numbers that some retry already repeats."""
        trials = self.get_all_trials(study_id, deepcopy=False)  # type: ignore[attr-defined]
        failed = [(trial_id_of(t), t.number) for t in trials
                  if t.state == TrialState.FAIL and t.system_attrs.get(SystemKey.STALE)]
        retried = ({number for t in trials for number in t.system_attrs.get(SystemKey.RETRY_HISTORY, [])}
                   if failed else set())
        return failed, retried

    def _requeue_lost_retries(self, study_id: int, grace: float) -> None:
        """Run the retry callback for stale failures whose own worker died before running it."""
        callback = self.get_heartbeat_stale_trial_callback()
        if callback is None:
            return
        failed, retried = self._stale_failures(study_id)
        orphans = [trial_id for trial_id, number in failed if number not in retried]
        if not orphans:
            return
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace)
        study = optuna.Study(study_name=self.get_study_name_from_id(study_id),  # type: ignore[attr-defined]
                             storage=self)  # type: ignore[arg-type]
        for trial_id in orphans:
            trial = self.get_trial(trial_id)  # type: ignore[attr-defined]
            if record_of(trial.user_attrs).get(TrialKey.BACKEND) == "ray":
                continue  # Ray's recovery (backends/ray_trials.py) re-queues its own trials
            if trial.datetime_complete is None or trial.datetime_complete > cutoff:
                continue  # failed moments ago: the worker that failed it may be re-queuing it now
            if len(trial.system_attrs.get(SystemKey.RETRY_HISTORY, [])) >= MAX_STALE_RETRIES:
                continue  # its retries are spent: the callback would not re-queue it either
            log.warning("trial %d failed as stale but was never re-queued (its worker died meanwhile): "
                        "re-queuing it now", trial.number)
            callback(study, trial)


def last_sign_of_life(trial: FrozenTrial) -> float:
    """Epoch seconds of the trial's last beat, or of its start when it has not beaten since then.

    A lease older than the start is a previous run's (a retry popped again), not this one's.
    """
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else 0.0
    lease: Any = trial.system_attrs.get(SystemKey.LEASE)
    return max(started, float(lease)) if isinstance(lease, (int, float)) else started
