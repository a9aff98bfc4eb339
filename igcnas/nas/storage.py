"""Optuna's RDB storage with two gaps in its stale-trial handling closed.

1. A worker killed between taking a trial (``ask``, or popping an enqueued seed)
   and its heartbeat thread's first beat leaves a RUNNING trial with no heartbeat
   at all, which Optuna never fails; with ``--total-trials`` it would hold a slot
   forever. Here such a trial, once older than the grace period, is failed and
   retried like any stale one.
2. Optuna fails a stale trial and only then runs the retry callback that
   re-enqueues its parameters; a worker killed between the two leaves a failed
   trial that is never retried (seen in CI as a search with one trial fewer than
   asked). Every trial this storage finds stale is marked (``TrialKey.STALE``)
   while still RUNNING, so a later worker can tell a stale failure from a trial
   that failed by its own error, and one whose failure is older than the grace
   period and appears in no trial's retry history is retried then.

Ray trials (no heartbeat by design; they carry ``backend=ray`` from their first
moment) are left to Ray. A module-level class so that Ray Tune can pickle the
searcher that holds the storage.
"""

from __future__ import annotations

import datetime
import json
import logging

import optuna
from optuna.storages._rdb import models

from igcnas.nas.records import TrialKey

__all__ = ["HeartbeatRDBStorage", "MAX_STALE_RETRIES"]

log = logging.getLogger(__name__)

# A trial whose worker died this many times in a row is left failed (it may be what kills them).
MAX_STALE_RETRIES = 3
_RETRY_HISTORY = "retry_history"  # written by Optuna's RetryHeartbeatStaleTrialCallback


class HeartbeatRDBStorage(optuna.storages.RDBStorage):
    def _grace_cutoff(self) -> datetime.datetime:
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0)
        return datetime.datetime.now() - datetime.timedelta(seconds=grace)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = list(super()._get_stale_trial_ids(study_id))
        cutoff = self._grace_cutoff()
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial._trial_id in stale or trial.datetime_start is None or trial.datetime_start > cutoff:
                continue
            if trial.user_attrs.get(TrialKey.BACKEND) == "ray":
                continue
            session = self.scoped_session()
            try:
                beats = session.query(models.TrialHeartbeatModel).filter(
                    models.TrialHeartbeatModel.trial_id == trial._trial_id).count()
            finally:
                session.close()
            if beats == 0:
                stale.append(trial._trial_id)
        marked = []
        for trial_id in stale:
            try:
                self.set_trial_system_attr(trial_id, TrialKey.STALE, True)
                marked.append(trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker failed it meanwhile; it is that worker's to retry
        self._retry_orphaned_failures(study_id, cutoff)
        return marked

    def _retry_orphaned_failures(self, study_id: int, cutoff: datetime.datetime) -> None:
        """Run the retry callback for stale failures whose own worker died before running it."""
        callback = self.get_heartbeat_stale_trial_callback()
        if callback is None:
            return
        session = self.scoped_session()
        try:
            in_study = models.TrialModel.study_id == study_id
            stale_failed = (session.query(models.TrialModel.trial_id, models.TrialModel.number)
                            .join(models.TrialSystemAttributeModel,
                                  models.TrialSystemAttributeModel.trial_id == models.TrialModel.trial_id)
                            .filter(in_study, models.TrialModel.state == optuna.trial.TrialState.FAIL,
                                    models.TrialSystemAttributeModel.key == TrialKey.STALE.value)
                            .all())
            if not stale_failed:
                return
            histories = (session.query(models.TrialSystemAttributeModel.value_json)
                         .join(models.TrialModel,
                               models.TrialSystemAttributeModel.trial_id == models.TrialModel.trial_id)
                         .filter(in_study, models.TrialSystemAttributeModel.key == _RETRY_HISTORY)
                         .all())
        finally:
            session.close()
        retried = {number for (value,) in histories for number in json.loads(value)}
        orphans = [trial_id for trial_id, number in stale_failed if number not in retried]
        if not orphans:
            return
        study = optuna.Study(study_name=self.get_study_name_from_id(study_id), storage=self)
        for trial_id in orphans:
            trial = self.get_trial(trial_id)
            if trial.datetime_complete is None or trial.datetime_complete > cutoff:
                continue  # failed moments ago: the worker that failed it may be re-queuing it now
            if len(trial.system_attrs.get(_RETRY_HISTORY, [])) >= MAX_STALE_RETRIES:
                continue  # its retries are spent: the callback would not re-queue it either
            log.warning("trial %d failed as stale but was never re-queued (its worker died meanwhile): "
                        "re-queuing it now", trial.number)
            callback(study, trial)
