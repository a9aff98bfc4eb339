"""The Optuna backend: a multi-objective study over valid IGC configurations.

Storage is any Optuna RDB URL (a SQLite file in the output directory by
default; PostgreSQL for many machines); running again with the same study
name continues the study. Every trial stores its full configuration, arch id,
costs and per-epoch validation curve as user attributes, so the study alone is
enough to rebuild any model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from igcnas.nas.early_stopping import RungSchedule, fidelity_key
from igcnas.nas.samplers import SAMPLERS, make_sampler
from igcnas.nas.space import Budget
from igcnas.search_space.spec import SearchSpec, space_bounds

__all__ = ["SearchOptions", "SearchOutcome", "SAMPLERS", "open_storage", "open_study", "make_sampler",
           "run_search", "prepare", "DIRECTIONS", "OBJECTIVE_NAMES"]

log = logging.getLogger(__name__)

BACKENDS = ("optuna", "ray")
OBJECTIVE_NAMES = ("val_accuracy", "params", "macs")
DIRECTIONS = ("maximize", "minimize", "minimize")
DATASET_ATTR = "igcnas:dataset"
ARTIFACTS_ATTR = "igcnas:artifacts"
SPEC_ATTR = "igcnas:search_spec"


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """Everything ``igc-nas search`` takes; validated on construction."""

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    families: tuple[str, ...] | None = None
    widths: tuple[int, ...] | None = None
    blocks: tuple[int, ...] = (1, 2)
    max_l: int = 4
    n_trials: int = 40
    timeout: float | None = None
    sampler: str = "nsga2"
    storage: str | None = None
    study: str | None = None
    output_dir: str = "igc-nas-runs"
    backend: str = "optuna"
    address: str | None = None
    budget: Budget = field(default_factory=Budget)
    seed: int = 0
    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.05
    n_jobs: int = 1
    cpus_per_trial: int = 1
    max_concurrent: int | None = None
    latency_objective: bool = False
    val_fraction: float = 0.2
    max_batches_per_epoch: int | None = None
    save_weights: bool = True
    artifacts_dir: str | None = None
    write_dashboard: bool = True
    total_trials: int | None = None  # study-wide target of completed trials (many workers, resuming)
    heartbeat_interval: int = 20
    grace_period: int = 60
    trial_timeout: float | None = None  # seconds of training per trial before it is failed
    trial_memory_mb: float | None = None  # peak resident memory per trial before it is failed
    seed_balanced: bool = True  # enqueue the balance-condition and zoo networks when the study is new
    early_stopping: bool = True  # multi-objective successive halving (see igcnas.nas.early_stopping)
    eta: int = 3  # rung spacing and promotion quota (the best 1/eta of a rung go on)
    min_epochs: int = 1  # epochs at the first rung

    def __post_init__(self) -> None:
        from igcnas.evaluators.data import DATASETS

        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("n_trials", "epochs", "batch_size", "n_jobs", "cpus_per_trial", "max_l"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.study is not None and not self.study.strip():
            raise ValueError("study name must not be empty")
        if self.address is not None and self.backend != "ray":
            raise ValueError("--address only applies to --backend ray")
        if self.total_trials is not None and (not isinstance(self.total_trials, int) or self.total_trials < 1):
            raise ValueError(f"total-trials must be an integer >= 1, got {self.total_trials!r}")
        for name in ("trial_timeout", "trial_memory_mb"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name.replace('_', '-')} must be > 0, got {value!r}")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise ValueError("heartbeat interval must be >= 1 s and the grace period longer than it")
        self.rung_schedule  # validates eta and min_epochs

    @property
    def rung_schedule(self) -> RungSchedule | None:
        """The early-stopping rungs, or None when early stopping is off."""
        schedule = RungSchedule(max_epochs=self.epochs, min_epochs=self.min_epochs, eta=self.eta)
        return schedule if self.early_stopping else None

    @property
    def fidelity(self) -> str:
        return fidelity_key(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            max_batches_per_epoch=self.max_batches_per_epoch)

    @property
    def study_name(self) -> str:
        return self.study or f"igc-nas-{self.dataset}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.study_name

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(self.run_dir / 'study.db').resolve()}"

    @property
    def artifacts_path(self) -> Path:
        """Where trained weights go (an Optuna FileSystemArtifactStore); shared by all workers."""
        return Path(self.artifacts_dir) if self.artifacts_dir else self.run_dir / "artifacts"

    @property
    def directions(self) -> list[str]:
        return list(DIRECTIONS) + (["minimize"] if self.latency_objective else [])

    @property
    def measure_latency(self) -> bool:
        return self.latency_objective or self.budget.max_latency_ms is not None


@dataclass
class SearchOutcome:
    study: Any
    run_dir: Path
    storage_url: str
    completed_this_run: int
    files: dict[str, Path]
    front: Any  # pandas DataFrame
    hypervolume: float
    stopped_early_this_run: int = 0


def open_storage(url: str, *, heartbeat: bool = True, heartbeat_interval: int = 20, grace_period: int = 60) -> Any:
    """An Optuna RDB storage for ``url``; ValueError with a one-line reason when it cannot be used."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"storage URL {url!r} is not a valid SQLAlchemy URL "
                         "(e.g. sqlite:///path/study.db or postgresql://user@host/db)") from None
    if parsed.drivername.startswith("sqlite") and parsed.database:
        folder = Path(parsed.database).expanduser().parent
        if not folder.exists():
            raise ValueError(f"storage URL {url!r}: folder {str(folder)!r} does not exist")
    kwargs: dict[str, Any] = {}
    if heartbeat:
        import warnings

        # A worker that dies (SIGKILL, lost node) stops beating; after the grace period its trial is
        # marked failed and re-enqueued with the same parameters.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
        kwargs.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                      heartbeat_stale_trial_callback=retry)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            from igcnas.nas.storage import HeartbeatRDBStorage

            storage = HeartbeatRDBStorage(url, **kwargs)
    except Exception as exc:  # SQLAlchemy/driver errors vary by backend
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"storage {url!r} cannot be opened: {reason}") from None
    if parsed.drivername.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


def _fast_sqlite(engine: Any) -> None:
    """Write-ahead log and NORMAL sync for SQLite studies.

    A trial writes a dozen attributes, each its own transaction; with SQLite's default rollback
    journal every commit waits for the disk (~5 ms here), a fifth of a small digits trial. In WAL
    mode with synchronous=NORMAL a commit survives the process being killed (the tests SIGKILL
    workers), readers never block the writer, and only a power cut can lose the last commits.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections made while Optuna created the schema are reopened with the pragmas


def open_study(storage: Any, name: str, *, create: bool, directions: list[str] | None = None,
               sampler: Any = None) -> Any:
    """Load (or create) a study; a missing study without ``create`` is a ValueError."""
    import optuna

    if not create:
        try:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            raise ValueError(f"study {name!r} does not exist in this storage; studies there: "
                             f"{', '.join(names) or 'none'}") from None
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions,
                                load_if_exists=True)
    if directions is not None and [d.name.lower() for d in study.directions] != directions:
        raise ValueError(f"study {name!r} exists with objectives {[d.name.lower() for d in study.directions]}, "
                         f"not {directions} (use another --study name)")
    return study


@dataclass
class Prepared:
    options: SearchOptions
    spec: SearchSpec
    data: Any
    storage: Any
    study: Any
    reference: Any
    # Trials that existed before this run, enqueued seeds (WAITING) left out: this run will train those.
    earlier: frozenset[int] = frozenset()


def prepare(options: SearchOptions, *, sampler: Any = None) -> Prepared:
    """Load data, build the search spec, check budgets against the space, open the study.

    Everything that can be wrong with the input fails here, before the study is touched.
    """
    import optuna

    from igcnas.evaluators.data import load_dataset
    from igcnas.nas.pareto import REFERENCE_ATTR, ReferencePoint

    data = load_dataset(options.dataset, data_dir=options.data_dir, download=options.download,
                        seed=options.seed, val_fraction=options.val_fraction)
    spec = SearchSpec.for_data(in_channels=data.in_channels, input_size=data.input_size,
                               num_classes=data.num_classes, families=options.families, widths=options.widths,
                               blocks=options.blocks, max_l=options.max_l)
    bounds = space_bounds(spec)
    budget = options.budget
    if budget.max_params is not None and bounds.min_params > budget.max_params:
        raise ValueError(f"no configuration meets --max-params {budget.max_params:,.0f}: the smallest network in "
                         f"this space has {bounds.min_params:,} params")
    if budget.max_macs is not None and bounds.min_macs > budget.max_macs:
        raise ValueError(f"no configuration meets --max-macs {budget.max_macs:,.0f}: the cheapest network in "
                         f"this space needs {bounds.min_macs:,} MACs")
    if not options.storage:
        options.run_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(options.storage_url, heartbeat_interval=options.heartbeat_interval,
                           grace_period=options.grace_period)
    study = open_study(storage, options.study_name, create=True, directions=options.directions,
                       sampler=sampler if sampler is not None else make_sampler(options.sampler, options.seed))
    attrs = study.user_attrs
    if DATASET_ATTR in attrs and attrs[DATASET_ATTR] != options.dataset:
        raise ValueError(f"study {options.study_name!r} was created for dataset {attrs[DATASET_ATTR]!r}, "
                         f"not {options.dataset!r}")
    if REFERENCE_ATTR in attrs:
        reference = ReferencePoint.from_dict(attrs[REFERENCE_ATTR])
    else:
        reference = ReferencePoint(params=float(bounds.max_params), macs=float(bounds.max_macs),
                                   latency_ms=budget.max_latency_ms * 4 if budget.max_latency_ms else None)
        study.set_user_attr(REFERENCE_ATTR, reference.as_dict())
        study.set_user_attr(DATASET_ATTR, options.dataset)
        study.set_user_attr(SPEC_ATTR, spec.as_dict())
        study.set_user_attr("igcnas:objectives", list(OBJECTIVE_NAMES) +
                            (["latency_ms"] if options.latency_objective else []))
        if options.seed_balanced and not study.get_trials(deepcopy=False):
            from igcnas.nas.space import seed_params, zoo_seed_params

            for params in seed_params(spec) + zoo_seed_params(spec):
                study.enqueue_trial(params, skip_if_exists=True)
    if options.save_weights and attrs.get(ARTIFACTS_ATTR) != str(options.artifacts_path.resolve()):
        study.set_user_attr(ARTIFACTS_ATTR, str(options.artifacts_path.resolve()))
    earlier = frozenset(t.number for t in study.get_trials(deepcopy=False)
                        if t.state != optuna.trial.TrialState.WAITING)
    return Prepared(options, spec, data, storage, study, reference, earlier)


def make_objective(prep: Prepared) -> Callable[[Any], Any]:
    """The Optuna objective: suggest a valid config, check the budget, train, record everything."""
    import optuna

    from igcnas.evaluators.train import TrainSettings
    from igcnas.nas.early_stopping import RungEntry, StoppedAtRung, rung_population, should_promote
    from igcnas.nas.objective import evaluate_config, suggest_and_record

    options = prep.options
    schedule = options.rung_schedule

    def check_rung(trial: optuna.Trial, epoch: int, accuracy: float, params: int, macs: int) -> None:
        """MO-ASHA at a rung, against the trials of this study that reached it with the same schedule."""
        records = [(t.user_attrs.get("curve") or [], t.user_attrs["params"], t.user_attrs["macs"])
                   for t in trial.study.get_trials(deepcopy=False)
                   if t.number != trial.number and t.user_attrs.get("fidelity") == options.fidelity
                   and "params" in t.user_attrs and "macs" in t.user_attrs]
        peers = rung_population(records, epoch)
        promote, dominated_by, threshold = should_promote(RungEntry(accuracy, params, macs), peers, schedule.eta)
        if not promote:
            raise StoppedAtRung(epoch, accuracy, dominated_by, threshold, len(peers) + 1)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        if options.total_trials is not None and not _has_slot(trial, options.total_trials):
            trial.set_user_attr("status", "no_slot")
            raise optuna.TrialPruned(f"the study already has (or is running) its {options.total_trials} trials")
        pre = suggest_and_record(trial, prep.spec, options.budget)
        config = pre.config
        if pre.status == "over_budget":
            trial.set_user_attr("status", "over_budget")
            raise optuna.TrialPruned(pre.reason)
        trial.set_user_attr("fidelity", options.fidelity)
        curve: list[float] = []
        rungs: dict[str, float] = {}

        def on_epoch(epoch: int, accuracy: float) -> None:
            curve.append(accuracy)
            trial.set_user_attr("curve", list(curve))
            if schedule is not None and epoch in schedule.rungs:
                rungs[str(epoch)] = accuracy
                trial.set_user_attr("rungs", dict(rungs))
                check_rung(trial, epoch, accuracy, pre.params, pre.macs)

        settings = TrainSettings(epochs=options.epochs, batch_size=options.batch_size, lr=options.lr,
                                 seed=options.seed + trial.number,
                                 max_batches_per_epoch=options.max_batches_per_epoch,
                                 time_limit_s=options.trial_timeout, memory_limit_mb=options.trial_memory_mb)
        try:
            evaluation = evaluate_config(config, prep.data, train_settings=settings, budget=options.budget,
                                         measure_latency=options.measure_latency,
                                         model_seed=options.seed + trial.number, on_epoch=on_epoch)
        except StoppedAtRung as stop:
            trial.set_user_attr("status", "stopped_early")
            trial.set_user_attr("stopped_at_epoch", stop.epoch)
            trial.set_user_attr("stop_reason", str(stop))
            raise optuna.TrialPruned(str(stop)) from None
        except Exception as exc:
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        for key, value in evaluation.attrs.items():
            if pre.attrs.get(key) != value:
                trial.set_user_attr(key, value)
        if evaluation.status == "over_budget":  # measured latency over its budget: not trained
            for key, value in evaluation.constraints.items():
                if key not in pre.constraints:
                    trial.set_constraint(key, value)
            trial.set_user_attr("status", "over_budget")
            raise optuna.TrialPruned(evaluation.reason)
        if options.latency_objective and "max_latency_ms" in evaluation.constraints:
            trial.set_constraint("max_latency_ms", evaluation.constraints["max_latency_ms"])
        if options.save_weights:
            trial.set_user_attr("weights_artifact", store_weights(trial, evaluation.model, options.artifacts_path))
        trial.set_user_attr("status", "complete")
        values: tuple[float, ...] = (float(evaluation.val_accuracy or 0.0), float(evaluation.params),
                                     float(evaluation.macs))
        if options.latency_objective:
            values += (float(evaluation.latency_ms or 0.0),)
        return values

    return objective


def store_weights(trial: Any, model: Any, artifacts: Path, *, file_path: Path | None = None) -> str:
    """Store a trained state dict (or the saved ``file_path``) as an Optuna artifact of ``trial``."""
    import tempfile

    import torch
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifacts.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifacts))
    if file_path is not None:
        return upload_artifact(artifact_store=store, file_path=str(file_path), study_or_trial=trial)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial_{trial.number}.pt"
        torch.save(model.state_dict(), path)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def _has_slot(trial: Any, target: int) -> bool:
    """Whether ``trial`` may run toward a study-wide target of ``target`` completed trials.

    Trial numbers are handed out atomically by the storage, so deciding on the trials numbered
    before this one (complete, or still running) lets any number of workers share one target
    without ever completing more than ``target`` trials.
    """
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    earlier = trial.study.get_trials(deepcopy=False, states=states)
    return sum(1 for t in earlier if t.number < trial.number) < target


class _StopAfter:
    """Stops the study once this run has trained ``n`` trials (or skipped far too many).

    A trained trial is one trained to the full epochs or stopped early at a rung; configurations
    over budget were never trained and only count toward the skip limit.
    """

    def __init__(self, n: int, start_number: int, max_skipped: int, total: int | None = None) -> None:
        self.n = n
        self.start_number = start_number
        self.max_skipped = max_skipped
        self.total = total
        self.completed = 0
        self.stopped_early = 0
        self.skipped = 0
        self.failed = 0
        self.max_failed = max(10, 3 * n)
        self.last_failure = ""

    def __call__(self, study: Any, trial: Any) -> None:
        import optuna

        if trial.number < self.start_number:
            return
        if trial.state == optuna.trial.TrialState.FAIL:
            self.failed += 1
            self.last_failure = str(trial.user_attrs.get("fail_reason") or trial.system_attrs.get("fail_reason"))
            if self.failed >= self.max_failed:
                study.stop()  # something is wrong with every trial: stop instead of looping
                return
        if self.total is not None:
            complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            if trial.state == optuna.trial.TrialState.COMPLETE:
                self.completed += 1
            if complete >= self.total:
                study.stop()
            elif trial.user_attrs.get("status") == "no_slot":
                time.sleep(0.5)  # other workers hold the remaining slots: wait for them to finish or fail
            return
        if trial.state == optuna.trial.TrialState.COMPLETE:
            self.completed += 1
        elif trial.state == optuna.trial.TrialState.PRUNED:
            if trial.user_attrs.get("status") == "stopped_early":
                self.stopped_early += 1  # trained, then stopped at a rung: counts as one of the n trials
            else:
                self.skipped += 1
        if self.completed + self.stopped_early >= self.n or self.skipped >= self.max_skipped:
            study.stop()


def run_search(options: SearchOptions, *, callbacks: list[Callable[[Any, Any], None]] | None = None,
               on_ready: Callable[[Prepared], None] | None = None) -> SearchOutcome:
    """Run (or continue) the search and write the trial table and front into the run directory.

    ``on_ready`` is called once the input has been validated and the study opened.
    """
    import optuna
    import torch

    prep = prepare(options)
    if on_ready is not None:
        on_ready(prep)
    if options.backend == "ray":
        from igcnas.nas.ray_driver import run_ray_search

        completed = run_ray_search(prep, callbacks=callbacks)
    else:
        cpus = os.cpu_count() or 1
        torch.set_num_threads(max(1, cpus // options.n_jobs))
        # Trials numbered from here on are this run's (enqueued seeds are waiting trials with lower numbers).
        start_number = len(prep.earlier)
        stopper = _StopAfter(options.n_trials, start_number, max_skipped=max(200, 20 * options.n_trials),
                             total=options.total_trials)
        # Failed trials are reported by the caller with their reason; Optuna's own warning would add
        # a traceback for every one of them.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        if options.total_trials is not None and len(prep.study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= options.total_trials:
            return finish(prep, 0)
        try:
            prep.study.optimize(make_objective(prep), n_trials=None, timeout=options.timeout,
                                n_jobs=options.n_jobs, catch=(Exception,), callbacks=[stopper, *(callbacks or [])],
                                gc_after_trial=False)
        except KeyboardInterrupt:
            # Optuna has marked the running trial failed; write what exists, then stop.
            log.warning("interrupted: the running trial is recorded as failed; run the same command to go on")
            finish(prep, stopper.completed)
            raise
        completed = stopper.completed
        if stopper.completed == 0 and stopper.failed >= stopper.max_failed:
            finish(prep, 0)
            raise ValueError(f"{stopper.failed} trials failed and none completed; last reason: "
                             f"{stopper.last_failure}")
        if stopper.completed == 0 and stopper.skipped >= stopper.max_skipped:
            raise ValueError(f"no configuration within the budget was found in {stopper.skipped} samples; "
                             "loosen --max-params/--max-macs/--max-latency-ms")
    return finish(prep, completed)


def finish(prep: Prepared, completed: int) -> SearchOutcome:
    from igcnas.nas.pareto import export_trials, hypervolume, pareto_front, trials_frame

    options = prep.options
    study = prep.study
    df = trials_frame(study)
    front = pareto_front(df, with_latency=options.latency_objective)
    files: dict[str, Path] = {}
    run_dir = options.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    files["trials"] = export_trials(df, run_dir / "trials.csv")
    files["pareto"] = export_trials(front, run_dir / "pareto.csv")
    summary = {
        "study": options.study_name,
        "storage": options.storage_url,
        "dataset": options.dataset,
        "trials": int(len(df)),
        "completed": int((df["state"] == "COMPLETE").sum()),
        "pareto_size": int(len(front)),
        "hypervolume": hypervolume(df, prep.reference, with_latency=options.latency_objective),
        "reference_point": prep.reference.as_dict(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    files["summary"] = run_dir / "summary.json"
    tmp = files["summary"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(files["summary"])
    if options.write_dashboard:
        from igcnas.dashboards import write_report

        files["dashboard"] = write_report(study, run_dir / "dashboard.html")
    stopped = int(((df["status"] == "stopped_early") & ~df["number"].isin(prep.earlier)).sum()) if len(df) else 0
    return SearchOutcome(study, run_dir, options.storage_url, completed, files, front, summary["hypervolume"],
                         stopped)


def with_overrides(options: SearchOptions, **changes: Any) -> SearchOptions:
    return replace(options, **changes)
