"""The Optuna backend: ``study.optimize`` in this process (``--n-jobs`` threads), one objective per trial.

Many processes on one storage make a distributed search: each runs this
backend against the same study. The objective suggests a valid configuration,
checks the budget on closed-form costs, trains with rung checks (multi-objective
successive halving against the study's own records) and records everything on
the trial.
"""

from __future__ import annotations

import bisect
import logging
import os
import queue
import threading
import time
import weakref
from dataclasses import replace
from typing import Any, Callable

from igcnas.errors import BadInput
from igcnas.nas.backends import BackendReport, PreparedSearch, TrialCallback, run_limits
from igcnas.nas.records import TrialKey, TrialRecorder, TrialStatus, record_of

__all__ = ["OptunaBackend", "BACKEND", "RungCheck", "incremental_rung_check", "make_objective"]

log = logging.getLogger(__name__)


# Decides at a rung: (trial, epoch, its entry there) -> (promote, dominated by, threshold, rung size).
RungCheck = Callable[[Any, int, Any], tuple[bool, int, int, int]]


def incremental_rung_check(prep: PreparedSearch) -> RungCheck:
    """The rung populations as this process has read them (shared by its n_jobs threads), brought up to
    date at each check from the trials that finished since the last one (population.TrialFeed)."""
    from igcnas.nas.early_stopping import RungIndex
    from igcnas.nas.population import TrialFeed

    schedule = prep.options.rung_schedule
    if schedule is None:
        raise ValueError("a rung check needs a rung schedule (early stopping on)")
    index = RungIndex(prep.options.fidelity, schedule.eta)
    feed: list[TrialFeed] = []
    lock = threading.Lock()

    def check(trial: Any, epoch: int, own: Any) -> tuple[bool, int, int, int]:
        with lock:
            if not feed:
                feed.append(TrialFeed(trial.study))
            index.update(*feed[0].read())
            return index.decide(own, epoch, exclude=trial.number)

    return check


def make_objective(prep: PreparedSearch, *, rung_check: RungCheck | None = None) -> Callable[[Any], tuple[float, ...]]:
    """The Optuna objective: suggest a valid config, check the budget, train (``prep.evaluate``), record
    everything. ``rung_check``: how a rung decides (default :func:`incremental_rung_check`)."""
    import optuna

    from igcnas.nas.early_stopping import RungEntry, StoppedAtRung
    from igcnas.nas.trial_evaluation import suggest_and_record

    options = prep.options
    schedule = options.rung_schedule
    devices = _device_pool(options.devices)
    decide = rung_check or (incremental_rung_check(prep) if schedule is not None else None)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        record = TrialRecorder(trial)
        if options.total_trials is not None and not _has_slot(trial, options.total_trials):
            record.write(status=TrialStatus.NO_SLOT)
            raise optuna.TrialPruned(f"the study already has (or is running) its {options.total_trials} trials")
        pre = suggest_and_record(trial, prep.genome, options.budget, record, prep.latency_table,
                                 fidelity=options.fidelity)
        if pre.status == TrialStatus.OVER_BUDGET:
            raise optuna.TrialPruned(pre.reason)
        curve: list[float] = []
        rungs: dict[str, float] = {}

        def on_epoch(epoch: int, accuracy: float) -> None:
            curve.append(accuracy)
            record.update(curve=list(curve))
            if decide is None or schedule is None or epoch not in schedule.rungs:
                record.write_progress()
                return
            rungs[str(epoch)] = accuracy
            record.write(rungs=dict(rungs))  # the rung's peers in other processes see it before the check
            promote, dominated_by, threshold, size = decide(trial, epoch, RungEntry(accuracy, pre.params, pre.macs))
            if not promote:
                raise StoppedAtRung(epoch, accuracy, dominated_by, threshold, size)

        evaluation = _train(prep, trial, record, pre, devices, on_epoch)
        _record_trained(prep, trial, record, pre, evaluation)
        return evaluation.objective_values(options.objectives)

    return objective


def _device_pool(names: Any) -> queue.Queue[str] | None:
    """--devices: a pool the n_jobs trial threads take their device from (one trial per device at a time)."""
    if not names:
        return None
    devices: queue.Queue[str] = queue.Queue()
    for name in names:
        devices.put(name)
    return devices


def _train(prep: PreparedSearch, trial: Any, record: TrialRecorder, pre: Any, devices: queue.Queue[str] | None,
           on_epoch: Callable[[int, float], None]) -> Any:
    """Train the trial's network (on its own device from the pool, if any); a stop or failure is recorded."""
    import optuna

    from igcnas.nas.early_stopping import StoppedAtRung

    options = prep.options
    seed = options.seed + trial.number
    settings = options.train_settings(seed=seed)
    device = devices.get() if devices is not None else None
    try:
        if device is not None:
            settings = replace(settings, device=device)
            record.update(device=device)
        return prep.evaluate(pre.config, prep.data, train_settings=settings, budget=options.budget,
                             measure_latency=options.measure_latency, model_seed=seed, on_epoch=on_epoch,
                             latency_table=prep.latency_table)
    except StoppedAtRung as stop:
        record.write(status=TrialStatus.STOPPED_EARLY, stopped_at_epoch=stop.epoch, stop_reason=str(stop))
        raise optuna.TrialPruned(str(stop)) from None
    except Exception as exc:
        record.write(status=TrialStatus.FAILED, fail_reason=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if device is not None:
            devices.put(device)  # type: ignore[union-attr]


def _record_trained(prep: PreparedSearch, trial: Any, record: TrialRecorder, pre: Any, evaluation: Any) -> None:
    """A trained trial's record, constraints measured only now, and weights; written in one call."""
    import optuna

    from igcnas.nas.budget import record_constraints
    from igcnas.nas.study import store_weights

    options = prep.options
    record.update(evaluation.attrs)
    if evaluation.status == TrialStatus.OVER_BUDGET:  # measured latency over its budget: not trained
        record_constraints(trial, evaluation.constraints, already=pre.constraints)
        record.write(status=TrialStatus.OVER_BUDGET)
        raise optuna.TrialPruned(evaluation.reason)
    if set(evaluation.constraints) - set(pre.constraints):  # latency known only now (measured)
        record_constraints(trial, evaluation.constraints, already=pre.constraints)
    if options.save_weights:
        try:
            artifact = store_weights(trial, options.artifacts_path, model=evaluation.model)
        except Exception as exc:  # a trial whose weights cannot be stored must not end COMPLETE
            record.write(status=TrialStatus.FAILED,
                         fail_reason=f"storing the weights failed: {type(exc).__name__}: {exc}")
            raise
        record.update(weights_artifact=artifact)
    record.write(status=TrialStatus.COMPLETE)


def _has_slot(trial: Any, target: int) -> bool:
    """Whether ``trial`` may run toward a study-wide target of ``target`` completed trials.

    Trial numbers are handed out atomically by the storage, so deciding on the trials numbered
    before this one (complete, or still running) lets any number of workers share one target
    without ever completing more than ``target`` trials.
    """
    return _TrialCounts.of(trial.study).taken_before(trial.number) < target


class _TrialCounts:
    """COMPLETE and RUNNING trials of a study by number, read incrementally (the ``--total-trials`` checks).

    One per study in this process, shared by the slot check and the stopper of all its n_jobs threads:
    a COMPLETE trial stays COMPLETE, so only the trials finished since the last read are looked at.
    """

    _registry: weakref.WeakKeyDictionary[Any, dict[int, _TrialCounts]] = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self, study: Any) -> None:
        from igcnas.nas.population import TrialFeed

        self._feed = TrialFeed(study)
        self._lock = threading.Lock()
        self._complete: list[int] = []  # ascending
        self._running: list[int] = []

    @classmethod
    def of(cls, study: Any) -> _TrialCounts:
        with cls._registry_lock:
            from igcnas.nas.optuna_adapter import storage_of, study_id_of

            key = study_id_of(study)
            by_study = cls._registry.setdefault(storage_of(study), {})
            if key not in by_study:
                by_study[key] = cls(study)
            return by_study[key]

    def _refresh(self) -> None:
        import optuna

        finished, unfinished = self._feed.read()
        for t in finished:
            if t.state == optuna.trial.TrialState.COMPLETE:
                bisect.insort(self._complete, t.number)
        self._running = [t.number for t in unfinished if t.state == optuna.trial.TrialState.RUNNING]

    def complete(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._complete)

    def taken_before(self, number: int) -> int:
        """Trials numbered below ``number`` that are COMPLETE or RUNNING."""
        with self._lock:
            self._refresh()
            return bisect.bisect_left(self._complete, number) + sum(1 for n in self._running if n < number)


class _StopAfter:
    """Stops the study once this run has trained ``n`` trials (or skipped or failed far too many).

    A trained trial is one trained to the full epochs or stopped early at a rung; configurations
    over budget were never trained and only count toward the skip limit.
    """

    def __init__(self, n: int, start_number: int, total: int | None = None) -> None:
        self.n, self.start_number, self.total = n, start_number, total
        self.report = BackendReport()
        self.max_skipped, self.max_failed = run_limits(n)

    def __call__(self, study: Any, trial: Any) -> None:
        if trial.number < self.start_number:
            return
        report = self.report
        report.add(trial)
        if report.failed >= self.max_failed:
            study.stop()  # something is wrong with every trial: stop instead of looping
            return
        status = record_of(trial.user_attrs).get(TrialKey.STATUS)
        if self.total is not None:
            complete = _TrialCounts.of(study).complete()
            if complete >= self.total:
                study.stop()
            elif status == TrialStatus.NO_SLOT:
                time.sleep(0.5)  # other workers hold the remaining slots: wait for them to finish or fail
            return
        if report.trained + report.stopped_early >= self.n or report.skipped >= self.max_skipped:
            study.stop()


class OptunaBackend:
    """Trials in this process; every option is honoured except the Ray-only ones."""

    name = "optuna"
    unsupported = frozenset({"address", "cpus_per_trial", "gpus_per_trial", "max_concurrent"})

    def refine(self, job: Any, *, on_result: Any = None) -> Any:
        """Refine in this process; more processes on the same storage share the units (nas/refine.py)."""
        from igcnas.nas.refine import refine_here

        return refine_here(job, on_result=on_result)

    def run(self, prepared: PreparedSearch, *, callbacks: list[TrialCallback]) -> BackendReport:
        import optuna
        import torch

        prep, options = prepared, prepared.options
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // options.n_jobs))
        # Trials numbered from here on are this run's (enqueued seeds are waiting trials with lower numbers).
        stopper = _StopAfter(options.n_trials, len(prep.earlier), total=options.total_trials)
        # Failed trials are reported by the caller with their reason; Optuna's own warning would add
        # a traceback for every one of them.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        done = optuna.trial.TrialState.COMPLETE
        if options.total_trials is not None and len(prep.study.get_trials(
                deepcopy=False, states=(done,))) >= options.total_trials:
            return stopper.report
        study = prep.study
        study.sampler = prep.sampler()
        study.optimize(make_objective(prep), n_trials=None, timeout=options.timeout, n_jobs=options.n_jobs,
                       catch=(Exception,), callbacks=[stopper, *callbacks], gc_after_trial=False)
        report = stopper.report
        if report.trained == 0 and report.stopped_early == 0 and report.skipped >= stopper.max_skipped:
            raise BadInput(f"no configuration within the budget was found in {report.skipped} samples; "
                           "loosen --max-params/--max-macs/--max-latency-ms")
        return report


BACKEND = OptunaBackend()
