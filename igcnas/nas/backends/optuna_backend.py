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
from igcnas.nas.backends import BackendReport, Prepared, TrialCallback, run_limits
from igcnas.nas.records import TrialKey, TrialStatus

__all__ = ["OptunaBackend", "BACKEND", "make_objective"]

log = logging.getLogger(__name__)


def make_objective(prep: Prepared) -> Callable[[Any], tuple[float, ...]]:
    """The Optuna objective: suggest a valid config, check the budget, train, record everything."""
    import optuna

    from igcnas.nas import population
    from igcnas.nas.budget import record_constraints
    from igcnas.nas.early_stopping import RungEntry, RungIndex, StoppedAtRung, rung_peers, should_promote
    from igcnas.nas.objective import evaluate_config, suggest_and_record
    from igcnas.nas.study import store_weights

    options = prep.options
    schedule = options.rung_schedule
    # --devices: a pool the n_jobs trial threads take their device from (one trial per device at a time).
    devices: queue.Queue[str] | None = None
    if options.devices:
        devices = queue.Queue()
        for name in options.devices:
            devices.put(name)

    # The rung populations as this process has read them (shared by its n_jobs threads), brought up to
    # date at each check from the trials that finished since the last one (population.TrialFeed).
    rung_index = RungIndex(options.fidelity, schedule.eta) if schedule is not None else None
    rung_feed: list[population.TrialFeed] = []
    rung_lock = threading.Lock()

    def check_rung(trial: optuna.Trial, epoch: int, accuracy: float, params: int, macs: int) -> None:
        own = RungEntry(accuracy, params, macs)
        if population.FULL_SCAN or rung_index is None:
            peers = rung_peers(trial.study.get_trials(deepcopy=False), options.fidelity, epoch, exclude=trial.number)
            promote, dominated_by, threshold = should_promote(own, peers, schedule.eta)
            size = len(peers) + 1
        else:
            with rung_lock:
                if not rung_feed:
                    rung_feed.append(population.TrialFeed(trial.study))
                rung_index.update(*rung_feed[0].read())
                promote, dominated_by, threshold, size = rung_index.decide(own, epoch, exclude=trial.number)
        if not promote:
            raise StoppedAtRung(epoch, accuracy, dominated_by, threshold, size)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        if options.total_trials is not None and not _has_slot(trial, options.total_trials):
            trial.set_user_attr(TrialKey.STATUS, TrialStatus.NO_SLOT)
            raise optuna.TrialPruned(f"the study already has (or is running) its {options.total_trials} trials")
        pre = suggest_and_record(trial, prep.genome, options.budget, prep.latency_table)
        if pre.status == TrialStatus.OVER_BUDGET:
            trial.set_user_attr(TrialKey.STATUS, TrialStatus.OVER_BUDGET)
            raise optuna.TrialPruned(pre.reason)
        trial.set_user_attr(TrialKey.FIDELITY, options.fidelity)
        curve: list[float] = []
        rungs: dict[str, float] = {}

        def on_epoch(epoch: int, accuracy: float) -> None:
            curve.append(accuracy)
            trial.set_user_attr(TrialKey.CURVE, list(curve))
            if schedule is not None and epoch in schedule.rungs:
                rungs[str(epoch)] = accuracy
                trial.set_user_attr(TrialKey.RUNGS, dict(rungs))
                check_rung(trial, epoch, accuracy, pre.params, pre.macs)

        seed = options.seed + trial.number
        settings = options.train_settings(seed=seed)
        device = devices.get() if devices is not None else None  # --devices: this trial's own device
        try:
            if device is not None:
                settings = replace(settings, device=device)
                trial.set_user_attr(TrialKey.DEVICE, device)
            evaluation = evaluate_config(pre.config, prep.data, train_settings=settings,
                                         budget=options.budget, measure_latency=options.measure_latency,
                                         model_seed=seed, on_epoch=on_epoch, latency_table=prep.latency_table)
        except StoppedAtRung as stop:
            trial.set_user_attr(TrialKey.STATUS, TrialStatus.STOPPED_EARLY)
            trial.set_user_attr(TrialKey.STOPPED_AT_EPOCH, stop.epoch)
            trial.set_user_attr(TrialKey.STOP_REASON, str(stop))
            raise optuna.TrialPruned(str(stop)) from None
        except Exception as exc:
            trial.set_user_attr(TrialKey.STATUS, TrialStatus.FAILED)
            trial.set_user_attr(TrialKey.FAIL_REASON, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if device is not None:
                devices.put(device)
        for key, value in evaluation.attrs.items():
            if pre.attrs.get(key) != value:
                trial.set_user_attr(key, value)
        if evaluation.status == TrialStatus.OVER_BUDGET:  # measured latency over its budget: not trained
            record_constraints(trial, evaluation.constraints)
            trial.set_user_attr(TrialKey.STATUS, TrialStatus.OVER_BUDGET)
            raise optuna.TrialPruned(evaluation.reason)
        if set(evaluation.constraints) - set(pre.constraints):  # latency known only now (measured)
            record_constraints(trial, evaluation.constraints)
        if options.save_weights:
            try:
                artifact = store_weights(trial, options.artifacts_path, model=evaluation.model)
            except Exception as exc:  # a trial whose weights cannot be stored must not end COMPLETE
                trial.set_user_attr(TrialKey.STATUS, TrialStatus.FAILED)
                trial.set_user_attr(TrialKey.FAIL_REASON, f"storing the weights failed: {type(exc).__name__}: {exc}")
                raise
            trial.set_user_attr(TrialKey.WEIGHTS_ARTIFACT, artifact)
        trial.set_user_attr(TrialKey.STATUS, TrialStatus.COMPLETE)
        return evaluation.objective_values(options.objectives)

    return objective


def _has_slot(trial: Any, target: int) -> bool:
    """Whether ``trial`` may run toward a study-wide target of ``target`` completed trials.

    Trial numbers are handed out atomically by the storage, so deciding on the trials numbered
    before this one (complete, or still running) lets any number of workers share one target
    without ever completing more than ``target`` trials.
    """
    import optuna

    from igcnas.nas import population

    if population.FULL_SCAN:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
        earlier = trial.study.get_trials(deepcopy=False, states=states)
        return sum(1 for t in earlier if t.number < trial.number) < target
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
            by_study = cls._registry.setdefault(study._storage, {})
            if study._study_id not in by_study:
                by_study[study._study_id] = cls(study)
            return by_study[study._study_id]

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
        import optuna

        from igcnas.nas import population

        if trial.number < self.start_number:
            return
        report = self.report
        report.add(trial)
        if report.failed >= self.max_failed:
            study.stop()  # something is wrong with every trial: stop instead of looping
            return
        status = trial.user_attrs.get(TrialKey.STATUS)
        if self.total is not None:
            if population.FULL_SCAN:
                complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            else:
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

    def run(self, prepared: Prepared, *, callbacks: list[TrialCallback]) -> BackendReport:
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
