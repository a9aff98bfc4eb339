"""The Ray Tune backend (the only module that imports ray).

The same define-by-run space and evaluation as the Optuna backend run as Ray
Tune trials, with :class:`~ray.tune.search.optuna.OptunaSearch` asking and
telling the **same Optuna storage and study**. One study can therefore be
grown by either backend and read by the same tools. Trial attributes (config,
arch id, costs, curve) are written on the Optuna trial: before training by the
define-by-run function, after it by :class:`RecordingOptunaSearch`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["run_ray_search", "RecordingOptunaSearch", "MultiObjectiveASHA"]

log = logging.getLogger(__name__)

_DATA_CACHE: dict[tuple[Any, ...], Any] = {}

METRICS = ["val_accuracy", "params", "macs"]
MODES = ["max", "min", "min"]


def _trainable(config: dict[str, Any]) -> None:
    """A Ray Tune function trainable: one configuration, trained and reported."""
    import ray
    import torch
    from ray import tune

    from igcnas.evaluators.data import load_dataset
    from igcnas.evaluators.train import TrainSettings
    from igcnas.nas.objective import evaluate_config
    from igcnas.nas.space import Budget
    from igcnas.search_space.config import config_from_dict
    from igcnas.search_space.costs import closed_form_costs

    run = config["igcnas_run"]
    network = config_from_dict(config["igcnas_config"])
    if config.get("igcnas_status") == "over_budget":
        tune.report({"igcnas_status": "over_budget"})  # no objective values: recorded as pruned, not trained
        return
    torch.set_num_threads(max(1, int(run["cpus_per_trial"])))
    key = (run["dataset"], run["data_dir"], run["seed"], run["val_fraction"])
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(run["dataset"], data_dir=run["data_dir"], seed=run["seed"],
                                        val_fraction=run["val_fraction"])
    data = _DATA_CACHE[key]
    seed = int(run["seed"]) + int(config["igcnas_number"])
    settings = TrainSettings(epochs=run["epochs"], batch_size=run["batch_size"], lr=run["lr"], seed=seed,
                             max_batches_per_epoch=run["max_batches_per_epoch"])
    budget = Budget(**run["budget"])
    costs = closed_form_costs(network)
    curve: list[float] = []

    def on_epoch(epoch: int, accuracy: float) -> None:
        curve.append(accuracy)
        if epoch < settings.epochs:
            # The exact costs ride along so that the scheduler can rank trials at a rung on all objectives.
            tune.report({"epoch": epoch, "val_accuracy_epoch": accuracy, "igcnas_params": costs.params,
                         "igcnas_macs": costs.macs, "igcnas_curve": json.dumps(curve)})

    evaluation = evaluate_config(network, data, train_settings=settings, budget=budget,
                                 measure_latency=run["measure_latency"], model_seed=seed, on_epoch=on_epoch)
    # Nested values travel JSON-encoded so that Tune's result loggers see flat scalars only.
    result: dict[str, Any] = {"igcnas_status": evaluation.status, "igcnas_attrs": json.dumps(evaluation.attrs),
                              "igcnas_constraints": json.dumps(evaluation.constraints), "epoch": len(curve),
                              # which machine trained it: for finding slow or faulty nodes of a cluster
                              "igcnas_node": f"{ray.util.get_node_ip_address()} "
                                             f"{ray.get_runtime_context().get_node_id()[:12]}"}
    if evaluation.status == "complete":
        result.update(val_accuracy=float(evaluation.val_accuracy or 0.0), params=float(evaluation.params),
                      macs=float(evaluation.macs))
        if run["artifacts"]:
            pending = Path(run["artifacts"]) / "pending"
            pending.mkdir(parents=True, exist_ok=True)
            weights = pending / f"trial_{config['igcnas_number']}_{os.getpid()}.pt"
            torch.save(evaluation.model.state_dict(), weights)
            result["igcnas_weights_file"] = str(weights)
        if run["latency_objective"]:
            result["latency_ms"] = float(evaluation.latency_ms or 0.0)
    tune.report(result)


class _DefineByRun:
    """The define-by-run space for OptunaSearch (a class so that Tune can pickle the searcher)."""

    def __init__(self, spec: Any, budget: Any, run: dict[str, Any]) -> None:
        self.spec, self.budget, self.run = spec, budget, run

    def __call__(self, trial: Any) -> dict[str, Any]:
        from igcnas.nas.objective import suggest_and_record
        from igcnas.search_space.config import config_to_dict

        trial.set_user_attr("backend", "ray")  # first: Optuna workers must not take it for an orphan
        pre = suggest_and_record(trial, self.spec, self.budget)
        trial.set_user_attr("fidelity", self.run["fidelity"])
        return {"igcnas_config": config_to_dict(pre.config), "igcnas_status": pre.status,
                "igcnas_number": trial.number, "igcnas_run": self.run}


def _make_searcher_class() -> type:
    from ray.tune.search.optuna import OptunaSearch

    class _Recording(OptunaSearch):
        """OptunaSearch that also stores what the trial measured as Optuna user attributes."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            finished = bool(result) and all(result.get(m) is not None for m in metrics)
            if ot_trial is not None:
                try:
                    if result and not finished and "igcnas_status" not in result and "epoch" in result:
                        # Stopped by the scheduler at a rung: pruned, with what it reached there.
                        ot_trial.set_user_attr("status", "stopped_early")
                        ot_trial.set_user_attr("stopped_at_epoch", int(result["epoch"]))
                        ot_trial.set_user_attr("curve", json.loads(result.get("igcnas_curve") or "[]"))
                        ot_trial.set_user_attr("stop_reason", f"stopped by the multi-objective scheduler at "
                                                              f"rung epoch {result['epoch']}")
                    elif result:
                        for key, value in json.loads(result.get("igcnas_attrs") or "{}").items():
                            if ot_trial.user_attrs.get(key) != value:
                                ot_trial.set_user_attr(key, value)
                        for key, value in json.loads(result.get("igcnas_constraints") or "{}").items():
                            if key not in ot_trial.constraints:
                                ot_trial.set_constraint(key, value)
                        ot_trial.set_user_attr("status", result.get("igcnas_status", "complete"))
                        if result.get("igcnas_node"):
                            ot_trial.set_user_attr("ray_node", result["igcnas_node"])
                        weights = result.get("igcnas_weights_file")
                        if weights and Path(weights).is_file():
                            from igcnas.nas.optuna_driver import store_weights

                            artifact = store_weights(ot_trial, None, Path(weights).parent.parent,
                                                     file_path=Path(weights))
                            ot_trial.set_user_attr("weights_artifact", artifact)
                            Path(weights).unlink()
                    elif error:
                        ot_trial.set_user_attr("status", "failed")
                        ot_trial.set_user_attr("fail_reason", "the Ray trial raised an error (see Ray logs)")
                    ot_trial.set_user_attr("backend", "ray")
                except Exception as exc:  # recording is best effort; never lose the tell below
                    log.warning("could not record attributes of %s: %s", trial_id, exc)
            # Without every objective value OptunaSearch would tell COMPLETE with None values, which the
            # study refuses (the trial would stay RUNNING): such trials are pruned (or failed on error).
            super().on_trial_complete(trial_id, result=result if finished else None, error=error)

    return _Recording


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
            epoch = result.get("epoch")
            if epoch in self.rungs and "val_accuracy_epoch" in result and "igcnas_params" in result:
                entry = RungEntry(float(result["val_accuracy_epoch"]), float(result["igcnas_params"]),
                                  float(result["igcnas_macs"]))
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


def _rung_history(study: Any, schedule: Any, fidelity: str) -> dict[int, list[Any]]:
    """Rung members from the study's earlier trials trained with the same schedule."""
    from igcnas.nas.early_stopping import rung_population

    records = [(t.user_attrs.get("curve") or [], t.user_attrs["params"], t.user_attrs["macs"])
               for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("fidelity") == fidelity and "params" in t.user_attrs and "macs" in t.user_attrs]
    return {epoch: rung_population(records, epoch) for epoch in schedule.rungs}


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
        raise ValueError(f"--address must be auto or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ValueError(f"cannot connect to the Ray cluster at {address!r}: {exc.strerror or exc}") from None


def run_ray_search(prep: Any, *, callbacks: list[Callable[[Any, Any], None]] | None = None) -> int:
    """Run ``options.n_trials`` Ray Tune trials into the prepared study; returns how many completed."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from igcnas.nas.samplers import make_sampler

    options = prep.options
    run = {
        "dataset": options.dataset,
        "data_dir": str(Path(options.data_dir).resolve()) if options.data_dir else None,
        "seed": options.seed,
        "val_fraction": options.val_fraction,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "max_batches_per_epoch": options.max_batches_per_epoch,
        "budget": options.budget.as_dict(),
        "measure_latency": options.measure_latency,
        "latency_objective": options.latency_objective,
        "cpus_per_trial": options.cpus_per_trial,
        "fidelity": options.fidelity,
        "artifacts": str(options.artifacts_path.resolve()) if options.save_weights else None,
    }

    define = _DefineByRun(prep.spec, options.budget, run)
    metrics, modes = list(METRICS), list(MODES)
    if options.latency_objective:
        metrics.append("latency_ms")
        modes.append("min")
    searcher = RecordingOptunaSearch(space=define, metric=metrics, mode=modes,
                                     sampler=make_sampler(options.sampler, options.seed),
                                     study_name=options.study_name, storage=prep.storage)
    search_alg: Any = searcher
    if options.max_concurrent:
        search_alg = ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard/CSV/JSON result files
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Per-epoch reports carry the rung accuracy, not the final objectives OptunaSearch waits for.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    started_here = not ray.is_initialized()
    if started_here:
        init_kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
        if options.address:
            _check_reachable(options.address)
            init_kwargs["address"] = options.address
        else:
            init_kwargs["num_cpus"] = os.cpu_count() or 1
        # Workers import igcnas from this checkout or installed package; make sure they can.
        package_root = str(Path(__file__).resolve().parents[2])
        init_kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}}
        try:
            ray.init(**init_kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ValueError(f"cannot connect to the Ray cluster at {options.address!r}: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    schedule = options.rung_schedule
    scheduler = None
    if schedule is not None and schedule.rungs:
        scheduler = MultiObjectiveASHA(schedule, _rung_history(prep.study, schedule, options.fidelity))
    try:
        tuner = tune.Tuner(
            tune.with_resources(_trainable, {"cpu": options.cpus_per_trial}),
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=options.n_trials,
                                        time_budget_s=options.timeout, scheduler=scheduler),
            run_config=tune.RunConfig(name=f"{options.study_name}-ray",
                                      storage_path=str((options.run_dir / "ray").resolve()), verbose=0,
                                      # a trial lost with its node is retried once, then recorded as failed
                                      failure_config=tune.FailureConfig(max_failures=1)),
        )
        with warnings.catch_warnings(), _quiet(TUNE_RESULT_FILES_LOGGER):
            # The searcher asks trials from the storage outside Study.optimize; its heartbeat is not used
            # for Ray trials (their backend attribute exempts them from orphan failing).
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    # Enqueued seeds are not in prep.earlier: Tune's searcher runs them as this run's trials.
    new = [t for t in prep.study.get_trials(deepcopy=False) if t.number not in prep.earlier]
    for trial in new:
        for callback in callbacks or []:
            callback(prep.study, trial)
    return sum(1 for t in new if t.state == optuna.trial.TrialState.COMPLETE)
