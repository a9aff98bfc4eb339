"""The Ray Tune backend (with ``ray_trials`` and ``ray_refine``, the only modules that import ray).

The same genes, evaluation and records as the Optuna backend run as Ray Tune
trials, with Ray Tune's ``OptunaSearch`` asking and telling the **same Optuna
storage and study** with the same sampler object, so one study can be grown by
either backend and read by the same tools. Trial attributes are written on the
Optuna trial: before training by the define-by-run function, after it by the
recording searcher. Over-budget samples count toward the skip limit, not
``--n-trials``: the backend runs Tune rounds until ``--n-trials`` trials were
trained (to the end or to a rung), as the Optuna backend counts.

Nothing assumes a disk shared with the nodes: every node that can hold a trial first loads the
data set (a node without ``--data-dir`` is bad input, named), and trained weights come back in
the trial's final result and are stored by this driver. Tune trials live and die with the driver
that runs them, so each Ray trial records its driver (host, pid) and a lease this driver renews;
a later driver fails and re-queues (same parameters) the RUNNING trials of a driver that is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from igcnas.errors import BadInput
from igcnas.nas.backends import BackendReport, PreparedSearch, TrialCallback, run_limits
from igcnas.nas.backends.ray_trials import (DefineByRun, DriverLease, check_nodes, driver_identity,
                                           requeue_orphans, trainable)
from igcnas.nas.budget import record_constraints
from igcnas.nas.records import RayKey, TrialRecorder, TrialStatus

__all__ = ["RayBackend", "BACKEND", "RecordingOptunaSearch", "MultiObjectiveASHA"]

log = logging.getLogger(__name__)


def _make_searcher_class() -> type:
    from ray.tune.search.optuna import OptunaSearch

    from igcnas.nas.study import store_weights

    class _Recording(OptunaSearch):
        """OptunaSearch that also stores what the trial measured (and its weights) on the Optuna trial.

        Recording is part of the result: if it fails (a weight upload that cannot be written, weights
        that did not arrive), the trial is told as failed with the reason rather than complete without
        weights. ``artifacts``: where weights are stored (None: --no-save-weights).
        """

        def __init__(self, *, artifacts: Path | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.artifacts = artifacts

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            # A trial that failed inside (diverged, over its time or memory limit) is told as failed.
            error = error or bool(result and result.get(RayKey.STATUS) == TrialStatus.FAILED)
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            finished = bool(result) and all(result.get(m) is not None for m in metrics)
            if ot_trial is not None:
                record = TrialRecorder(ot_trial)
                try:
                    record = TrialRecorder.resume(ot_trial).update(backend="ray")
                    if result and not finished and RayKey.STATUS not in result and RayKey.EPOCH in result:
                        _record_stopped(record, result)
                    elif result:
                        # A trial told COMPLETE (every objective value) must bring its weights.
                        _record_result(record, result, store_weights, self.artifacts if finished else None)
                    elif error:
                        record.write(status=TrialStatus.FAILED,
                                     fail_reason="the Ray trial raised an error (see Ray logs)")
                except Exception as exc:  # noqa: BLE001 - any recording failure fails the trial, with its reason
                    log.warning("trial %s: recording failed, the trial is failed: %s", trial_id, exc)
                    with contextlib.suppress(Exception):
                        record.write(status=TrialStatus.FAILED,
                                     fail_reason=f"recording the result failed: {type(exc).__name__}: {exc}")
                    super().on_trial_complete(trial_id, result=None, error=True)
                    return
            # Without every objective value OptunaSearch would tell COMPLETE with None values, which the
            # study refuses (the trial would stay RUNNING): such trials are pruned (or failed on error).
            super().on_trial_complete(trial_id, result=result if finished else None, error=error)

    return _Recording


def _record_stopped(record: TrialRecorder, result: dict) -> None:
    """Stopped by the scheduler at a rung: pruned, with what it reached there."""
    record.write(status=TrialStatus.STOPPED_EARLY, stopped_at_epoch=int(result[RayKey.EPOCH]),
                 curve=json.loads(result.get(RayKey.CURVE) or "[]"),
                 stop_reason=f"stopped by the multi-objective scheduler at rung epoch {result[RayKey.EPOCH]}")


def _record_result(record: TrialRecorder, result: dict, store_weights: Any, artifacts: Path | None) -> None:
    """The trained trial's record, written in one call after its weights are stored."""
    if artifacts is not None:
        # Stored first: a trial whose weights cannot be stored (or never came) must not end COMPLETE.
        if not isinstance(result.get(RayKey.WEIGHTS), bytes):
            raise RuntimeError(f"its weights did not arrive with its result (from {result.get(RayKey.NODE)})")
        record.update(weights_artifact=store_weights(record.trial, artifacts, data=result[RayKey.WEIGHTS]))
    record.update(json.loads(result.get(RayKey.RECORD) or "{}"))
    record_constraints(record.trial, json.loads(result.get(RayKey.CONSTRAINTS) or "{}"))
    record.update(status=result.get(RayKey.STATUS, TrialStatus.COMPLETE))
    if result.get(RayKey.ERROR):
        record.update(fail_reason=result[RayKey.ERROR])
    if result.get(RayKey.NODE):
        record.update(ray_node=result[RayKey.NODE])
    record.write()


def RecordingOptunaSearch(**kwargs: Any) -> Any:  # noqa: N802 - a class factory (ray imported lazily)
    return _make_searcher_class()(**kwargs)


def _make_scheduler_class() -> type:
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from igcnas.nas.early_stopping import RungEntry, should_promote

    class _MultiObjectiveASHA(FIFOScheduler):
        """Multi-objective asynchronous successive halving as a Tune scheduler.

        Tune's schedulers rank one metric; this one ranks a trial at each rung on (accuracy there,
        params, MACs) against every trial that reached the rung before it (those of earlier runs of the
        study included) and stops it when too many dominate it; see ``igcnas.nas.early_stopping``.
        """

        def __init__(self, schedule: Any, history: dict[int, list[Any]]) -> None:
            super().__init__()
            self.schedule = schedule
            self.rungs: dict[int, list[Any]] = {e: list(history.get(e, [])) for e in schedule.rungs}
            self.decisions = {"promoted": 0, "stopped": 0}

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            epoch = result.get(RayKey.EPOCH)
            if epoch in self.rungs and RayKey.ACCURACY in result and RayKey.PARAMS in result:
                entry = RungEntry(float(result[RayKey.ACCURACY]), float(result[RayKey.PARAMS]),
                                  float(result[RayKey.MACS]))
                promote, _, _ = should_promote(entry, self.rungs[epoch], self.schedule.eta)
                self.rungs[epoch].append(entry)
                self.decisions["promoted" if promote else "stopped"] += 1
                if not promote:
                    return TrialScheduler.STOP
            return TrialScheduler.CONTINUE

        def debug_string(self) -> str:
            return f"MultiObjectiveASHA rungs {self.schedule.rungs}: {self.decisions}"

    return _MultiObjectiveASHA


def MultiObjectiveASHA(schedule: Any, history: dict[int, list[Any]] | None = None) -> Any:  # noqa: N802
    """A Tune ``TrialScheduler`` for multi-objective successive halving (ray imported lazily)."""
    return _make_scheduler_class()(schedule, history or {})


def _drop_weights_callback() -> Any:
    """A Tune callback that forgets a finished trial's weights once the searcher stored them.

    Tune keeps each trial's last result in memory and in its experiment state file: with the weights
    there, both would grow by one state dict per trial.
    """
    from ray.tune import Callback

    class _DropWeights(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if trial.run_metadata.last_result.pop(RayKey.WEIGHTS, None) is not None:
                trial.run_metadata.invalidate_cache()

    return _DropWeights()


# Results live in the Optuna study; Tune's result files are switched off, and the ResultGrid that
# fit() builds would warn for every trial that it found none.
TUNE_RESULT_FILES_LOGGER = "ray.tune.analysis.experiment_analysis"


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise one logger to ERROR for the duration of the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    import socket

    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise BadInput(f"--address must be auto or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise BadInput(f"cannot connect to the Ray cluster at {address!r}: {exc.strerror or exc}") from None


def _connect(address: str | None) -> bool:
    """Start or join Ray; True when this call started it (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    init_kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        _check_reachable(address)
        init_kwargs["address"] = address
    else:
        init_kwargs["num_cpus"] = os.cpu_count() or 1
    # Workers import igcnas from this checkout or installed package; make sure they can.
    package_root = str(Path(__file__).resolve().parents[3])
    init_kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}}
    try:
        ray.init(**init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BadInput(f"cannot connect to the Ray cluster at {address!r}: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


class RayBackend:
    """Trials as Ray Tune trials on a cluster; per-process options (threads, study-wide targets) are refused."""

    name = "ray"
    unsupported = frozenset({"total_trials", "n_jobs", "devices"})

    def run(self, prepared: PreparedSearch, *, callbacks: list[TrialCallback]) -> BackendReport:
        import ray

        prep, options = prepared, prepared.options
        run = _run_settings(prep)
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard/CSV/JSON result files
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Per-epoch reports carry the rung accuracy, not the final objectives OptunaSearch waits for.
        os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
        driver = driver_identity()
        requeue_orphans(prep.study, grace=options.grace_period)
        started_here = _connect(options.address)
        report, seen = BackendReport(), set(prep.earlier)
        max_skipped, max_failed = run_limits(options.n_trials)
        deadline = None if options.timeout is None else time.monotonic() + options.timeout
        sampler = prep.sampler()  # one object for every round: its state (and RNG) carries on
        lease = DriverLease(prep.study, driver, interval=options.heartbeat_interval)
        try:
            check_nodes(run, cpus=options.cpus_per_trial, gpus=options.gpus_per_trial)
            lease.start()
            while (report.trained + report.stopped_early < options.n_trials and report.skipped < max_skipped
                   and report.failed < max_failed):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                n = options.n_trials - report.trained - report.stopped_early
                tuner = _tuner(prep, run, driver, sampler, n=n, remaining=remaining)
                if not _run_round(tuner, prep, report, seen, callbacks):
                    break
        finally:
            lease.stop()
            if started_here:
                ray.shutdown()
        if report.trained == 0 and report.stopped_early == 0 and report.skipped >= max_skipped:
            raise BadInput(f"no configuration within the budget was found in {report.skipped} samples; "
                           "loosen --max-params/--max-macs/--max-latency-ms")
        return report

    def refine(self, job: Any, *, on_result: Any = None) -> Any:
        """Refinement units as Ray tasks on the cluster (``ray_refine``); this driver records each result."""
        from igcnas.nas.backends.ray_refine import refine_on_ray

        return refine_on_ray(job, on_result=on_result, connect=_connect)


def _tuner(prep: PreparedSearch, run: dict[str, Any], driver: dict[str, Any], sampler: Any, *, n: int,
           remaining: float | None) -> Any:
    """One Tune round of ``n`` trials: the recording searcher (over the study's sampler), scheduler and trainable."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    options, objectives = prep.options, prep.options.objectives
    searcher = RecordingOptunaSearch(space=DefineByRun(prep.genome, options.budget, run, driver, prep.latency_table),
                                     artifacts=options.artifacts_path if options.save_weights else None,
                                     metric=[o.name for o in objectives],
                                     mode=[o.tune_mode for o in objectives], sampler=sampler,
                                     study_name=options.study_name, storage=prep.storage)
    search_alg: Any = searcher
    if options.max_concurrent:
        search_alg = ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent)
    return tune.Tuner(
        # --gpus-per-trial: Tune gives the trial its (share of a) GPU and sets CUDA_VISIBLE_DEVICES,
        # so "auto" resolves to it there and to the CPU in trials without one.
        tune.with_resources(tune.with_parameters(trainable, evaluate=prep.evaluate),
                            {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}),
        tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=n, time_budget_s=remaining,
                                    scheduler=_scheduler(prep)),
        run_config=tune.RunConfig(name=f"{options.study_name}-ray",
                                  storage_path=str((options.run_dir / "ray").resolve()), verbose=0,
                                  # a trial lost with its node is retried once, then recorded failed
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  callbacks=[_drop_weights_callback()]),
    )


def _scheduler(prep: PreparedSearch) -> Any:
    """The multi-objective rung scheduler, fed the rungs the study's trials reached so far (None: no rungs)."""
    from igcnas.nas.early_stopping import rung_peers

    schedule = prep.options.rung_schedule
    if schedule is None or not schedule.rungs:
        return None
    trials = prep.study.get_trials(deepcopy=False)
    return MultiObjectiveASHA(schedule, {e: rung_peers(trials, prep.options.fidelity, e) for e in schedule.rungs})


def _run_round(tuner: Any, prep: PreparedSearch, report: BackendReport, seen: set[int],
               callbacks: list[TrialCallback]) -> bool:
    """Fit one round and count the trials it finished (not in ``seen``); False when no more rounds should run."""
    with warnings.catch_warnings(), _quiet(TUNE_RESULT_FILES_LOGGER):
        # The searcher asks trials outside Study.optimize; its heartbeat is not used for Ray
        # trials (their backend attribute exempts them from orphan failing).
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        tuner.fit()
    new = [t for t in prep.study.get_trials(deepcopy=False) if t.number not in seen and t.state.is_finished()]
    if not new:
        return False  # nothing ran (time budget spent): do not loop
    failed_before = report.failed
    for trial in new:
        seen.add(trial.number)
        report.add(trial)
        for callback in callbacks:
            callback(prep.study, trial)
    return report.failed - failed_before != len(new)  # all failed: more rounds would fail the same way


def _run_settings(prep: PreparedSearch) -> dict[str, Any]:
    """What every Ray trial needs to load the same data and train the same way (plain, picklable values)."""
    options = prep.options
    return {
        **options.evaluation_record(),
        "budget": options.budget.as_dict(),
        "measure_latency": options.measure_latency,
        "latency_objective": options.latency_objective,
        # Trials are predicted on the driver (the table stays there); workers time the trained network on
        # the table's runtime, threads and batch.
        "latency_fingerprint": dataclasses.asdict(prep.latency_table.fingerprint) if prep.latency_table else None,
        "latency_probe_us": prep.latency_table.probe_us if prep.latency_table else None,
        "cpus_per_trial": options.cpus_per_trial,
        "fidelity": options.fidelity,
        "trial_timeout": options.trial_timeout,
        "trial_memory_mb": options.trial_memory_mb,
        # How every trial trains: the same TrainSettings the Optuna backend uses (its seed set per trial).
        "train": dataclasses.asdict(options.train_settings(seed=0)),
        "objectives": [o.name for o in options.objectives],
        "save_weights": options.save_weights,
    }


BACKEND = RayBackend()
