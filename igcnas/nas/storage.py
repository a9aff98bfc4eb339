"""Optuna's RDB storage with one gap in its stale-trial detection closed.

A worker killed between taking a trial (``ask``, or popping an enqueued seed)
and its heartbeat thread's first beat leaves a RUNNING trial with no heartbeat
at all, which Optuna never fails; with ``--total-trials`` it would hold a slot
forever. Here such a trial, once older than the grace period, is failed and
retried like any stale one. Ray trials (no heartbeat by design; they carry
``backend=ray`` from their first moment) are left to Ray. A module-level class
so that Ray Tune can pickle the searcher that holds the storage.
"""

from __future__ import annotations

import datetime

import optuna
from optuna.storages._rdb import models

from igcnas.nas.records import TrialKey

__all__ = ["HeartbeatRDBStorage"]


class HeartbeatRDBStorage(optuna.storages.RDBStorage):
    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = list(super()._get_stale_trial_ids(study_id))
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0)
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace)
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
        return stale
