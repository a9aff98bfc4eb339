"""What the Ray backend ships to the cluster, and what lets a later driver take over a dead one's trials.

Shipped: the define-by-run space, the trial function and the per-node data check. Kept apart from
``ray_backend`` so that Tune pickles small module-level objects; ray is imported inside functions
only. The trial function trains exactly as the Optuna backend does (the same data split, training
settings, per-trial limits and evaluation), and its trained weights travel back inside its final
result (bytes), never as a file: the node that trained may share no disk with the driver.

Drivers: each Ray trial records the driver that runs it (host, pid, process start) and a lease the
driver renews (:class:`DriverLease`); :func:`requeue_orphans` fails and re-queues the RUNNING trials
of a driver that is gone, as the storage does for Optuna workers whose heartbeat stopped.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import logging
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from igcnas.errors import BadInput
from igcnas.nas.optuna_adapter import set_trial_system_attr, storage_of, trial_id_of
from igcnas.nas.records import (RECORD_ATTR, RayKey, SystemKey, TrialKey, TrialRecorder, TrialStatus, record_of,
                                rewrite_record)

__all__ = ["DefineByRun", "DriverLease", "check_nodes", "driver_gone", "driver_identity",
           "load_cached", "requeue_orphans", "trainable"]

log = logging.getLogger(__name__)

_DATA_CACHE: dict[tuple[Any, ...], Any] = {}


class DefineByRun:
    """The define-by-run space for OptunaSearch (a class so that Tune can pickle the searcher)."""

    def __init__(self, genome: Any, budget: Any, run: dict[str, Any], driver: dict[str, Any],
                 latency_table: Any = None) -> None:
        self.genome, self.budget, self.run, self.driver = genome, budget, run, driver
        self.latency_table = latency_table

    def __call__(self, trial: Any) -> dict[str, Any]:
        from igcnas.nas.trial_evaluation import suggest_and_record
        from igcnas.search_space.config_io import config_to_dict

        # First: Optuna workers must not take it for an orphan; whose trial it is, and a fresh lease: a later
        # driver re-queues it only once this driver is gone.
        record = TrialRecorder(trial)
        record.write(backend="ray", ray_driver=self.driver)
        set_trial_system_attr(trial.study, trial, SystemKey.DRIVER_LEASE, time.time())
        pre = suggest_and_record(trial, self.genome, self.budget, record, self.latency_table,
                                 fidelity=self.run["fidelity"])
        return {RayKey.CONFIG: config_to_dict(pre.config), RayKey.STATUS: pre.status,
                RayKey.NUMBER: trial.number, RayKey.RUN: self.run, RayKey.LATENCY_MS: pre.latency_ms}


def trainable(config: dict[str, Any], evaluate: Any = None) -> None:
    """A Ray Tune function trainable: one configuration, trained (``evaluate``: the search's
    ``PreparedSearch.evaluate``, default ``nas.trial_evaluation.evaluate_config``) and reported."""
    import ray
    from ray import tune

    from igcnas.evaluators.latency_runtime import Fingerprint
    from igcnas.evaluators.train import TrainSettings, TrialDiverged, TrialLimitExceeded
    from igcnas.nas.budget import Budget
    from igcnas.nas.trial_evaluation import evaluate_config
    from igcnas.search_space.config_io import config_from_dict
    from igcnas.search_space.costs import closed_form_costs

    run = config[RayKey.RUN]
    network = config_from_dict(config[RayKey.CONFIG])
    if config.get(RayKey.STATUS) == TrialStatus.OVER_BUDGET:
        tune.report({RayKey.STATUS: TrialStatus.OVER_BUDGET})  # no objective values: pruned, never trained
        return
    fingerprint = _set_up_node(run)
    data = load_cached(run)
    seed = int(run["split_seed"]) + int(config[RayKey.NUMBER])
    settings = TrainSettings(**{**run["train"], "seed": seed})
    costs = closed_form_costs(network)
    curve: list[float] = []

    def on_epoch(epoch: int, accuracy: float) -> None:
        curve.append(accuracy)
        if epoch < settings.epochs:
            # The exact costs ride along so that the scheduler can rank trials at a rung on all objectives.
            tune.report({RayKey.EPOCH: epoch, RayKey.ACCURACY: accuracy, RayKey.PARAMS: costs.params,
                         RayKey.MACS: costs.macs, RayKey.CURVE: json.dumps(curve)})

    node = f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:12]}"
    try:
        evaluation = (evaluate or evaluate_config)(
            network, data, train_settings=settings, budget=Budget(**run["budget"]),
            measure_latency=run["measure_latency"], model_seed=seed, on_epoch=on_epoch,
            latency_fingerprint=Fingerprint(**fingerprint) if fingerprint else None)
        if config.get(RayKey.LATENCY_MS) is not None:  # predicted on the driver, before training
            evaluation.latency_ms = float(config[RayKey.LATENCY_MS])
    except (TrialDiverged, TrialLimitExceeded) as exc:
        # As on the Optuna backend: the trial fails with its reason and the search goes on.
        tune.report({RayKey.STATUS: TrialStatus.FAILED, RayKey.ERROR: f"{type(exc).__name__}: {exc}",
                     RayKey.NODE: node, RayKey.RECORD: json.dumps({TrialKey.CURVE: curve})})
        return
    tune.report(_final_result(evaluation, run, epochs=len(curve), node=node))


def _set_up_node(run: dict[str, Any]) -> dict[str, Any] | None:
    """Set this trial's threads and, on a node of the latency table's kind, its timing reference; the fingerprint."""
    import torch

    from igcnas.evaluators.latency_runtime import Fingerprint
    from igcnas.evaluators.timing import note_reference

    torch.set_num_threads(max(1, int(run["cpus_per_trial"])))
    fingerprint = run.get("latency_fingerprint")
    if fingerprint and Fingerprint(**fingerprint) == Fingerprint.here(**{k: fingerprint[k] for k in (
            "runtime", "threads", "batch", "input_size", "in_channels")}):
        note_reference(run.get("latency_probe_us"))  # a node of the table's kind counts blocks by its probe
    return fingerprint


def _final_result(evaluation: Any, run: dict[str, Any], *, epochs: int, node: str) -> dict[str, Any]:
    """A trained trial's final report: status, record, constraints, objective values and (bytes) weights."""
    import torch

    from igcnas.nas.objectives import objectives_for

    # Nested values travel JSON-encoded so that Tune's result loggers see flat scalars only.
    result: dict[str, Any] = {RayKey.STATUS: evaluation.status, RayKey.RECORD: json.dumps(evaluation.attrs),
                              RayKey.CONSTRAINTS: json.dumps(evaluation.constraints), RayKey.EPOCH: epochs,
                              RayKey.NODE: node}  # which machine trained it: finds slow or faulty nodes
    if evaluation.status == TrialStatus.COMPLETE:
        objectives = objectives_for(latency=run["latency_objective"])
        result.update(zip([o.name for o in objectives], evaluation.objective_values(objectives)))
        if run["save_weights"]:
            # In the result, not on this node's disk: the driver stores them (CPU tensors, loadable anywhere).
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in evaluation.model.state_dict().items()}, buffer)
            result[RayKey.WEIGHTS] = buffer.getvalue()
    return result


def load_cached(run: dict[str, Any]) -> Any:
    """The run's data splits, loaded once per worker process (its trials and refinements reuse them)."""
    key = (run["dataset"], run["data_dir"], run["split_seed"], run["val_fraction"])
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = _load(run)
    return _DATA_CACHE[key]


def _load(run: dict[str, Any]) -> Any:
    from igcnas.evaluators.datasets import load_dataset

    return load_dataset(run["dataset"], data_dir=run["data_dir"], seed=run["split_seed"],
                        val_fraction=run["val_fraction"], memory_cap_mb=run.get("memory_cap_mb"),
                        cache_dir=run.get("cache_dir"))


def _check_data_here(run: dict[str, Any]) -> str | None:
    """Load the run's data set on this node: None when it loads, else why not (one line).

    Run once per node before any trial is scheduled: a node without ``--data-dir`` would otherwise
    fail every trial it is given, one by one, after the search has started.
    """
    try:
        _load(run)
    except Exception as exc:  # noqa: BLE001 - any reason is reported, naming the node
        line = (str(exc).strip().splitlines() or [""])[0]
        return line if isinstance(exc, BadInput) and line else f"{type(exc).__name__}: {line}".rstrip(": ")
    return None


def check_nodes(run: dict[str, Any], *, cpus: float, gpus: float) -> None:
    """Load the data set once on every alive node that can hold a trial, before any is scheduled.

    ``--data-dir`` must exist on every node; nothing else checks it, and a node without it would fail
    each trial it is given. BadInput names the first node that cannot load it, with the reason.
    digits ships with scikit-learn: it loads wherever igcnas runs, so it is not checked (a check costs
    a worker process per node that imports torch: seconds).
    """
    if run["dataset"] == "digits":
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes()
             if n.get("Alive") and n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus]
    check = ray.remote(num_cpus=0, max_calls=1)(_check_data_here)  # max_calls: the worker exits, freeing the data
    refs = {check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(run): n
            for n in nodes}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=NODE_CHECK_TIMEOUT_S)
    for ref, node in refs.items():
        name = f"{node['NodeManagerAddress']} {node['NodeID'][:12]}"
        try:
            reason = ray.get(ref) if ref in ready else f"no answer within {NODE_CHECK_TIMEOUT_S} s"
        except Exception as exc:  # noqa: BLE001 - the task itself failed (the node died, igcnas not importable)
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        if reason:
            raise BadInput(f"--data-dir: node {name} cannot load data set {run['dataset']!r} from "
                           f"{run['data_dir']!r} (it must exist on every node that runs trials): {reason}")
    log.info("the data set loads on each of the %d nodes that can hold a trial", len(nodes))


NODE_CHECK_TIMEOUT_S = 300  # loading a large data set (or building its cache) on a node can take minutes


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None when there is no such process.

    Ticks, not wall time: they do not move when the clock is set, and a later process that reuses the
    pid has other ticks.
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    """This process's pid namespace (Linux): containers that share a host name have their own."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def driver_identity() -> dict[str, Any]:
    """This process as a Ray driver: host (and pid namespace), pid and its start (ticks where /proc exists)."""
    return {"host": socket.gethostname(), "pid_ns": _pid_namespace(), "pid": os.getpid(),
            "start_ticks": _start_ticks(os.getpid()), "started": datetime.datetime.now().isoformat(timespec="seconds")}


def driver_gone(driver: Any, lease: Any, started: datetime.datetime | None, *, grace: float) -> str | None:
    """Why the driver of a RUNNING Ray trial is gone (its trial will never end by itself), or None.

    On the driver's own machine (same host name and pid namespace) its process is looked up: gone at
    once when it no longer runs. From another machine (or container) only the lease tells: gone when older than ``grace`` seconds (clocks are assumed
    within that of each other); a trial with no lease at all goes by its start time.
    """
    if isinstance(driver, dict) and (driver.get("host"), driver.get("pid_ns")) == (socket.gethostname(),
                                                                                   _pid_namespace()):
        pid, ticks = int(driver.get("pid", 0)), driver.get("start_ticks")
        if ticks is not None and Path("/proc/self/stat").exists():
            alive = _start_ticks(pid) == ticks
        else:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        return None if alive else f"its Ray driver (pid {pid} on {driver['host']}) is gone"
    if isinstance(lease, (int, float)):
        age = time.time() - lease
    elif started is not None:
        age = (datetime.datetime.now() - started).total_seconds()
    else:
        return None
    if age <= grace:
        return None
    where = f"pid {driver.get('pid')} on {driver.get('host')}" if isinstance(driver, dict) else "unknown"
    return f"its Ray driver ({where}) has not renewed its lease for {age:.0f} s (grace {grace:.0f} s)"


class DriverLease:
    """Renews the lease on this driver's RUNNING trials every ``interval`` seconds, in a thread.

    Only drivers on other machines read it (on the same machine the process is looked up), so a
    renewal that fails is logged and retried at the next beat rather than stopping the search.
    """

    def __init__(self, study: Any, driver: dict[str, Any], *, interval: float) -> None:
        self.study, self.driver, self.interval = study, driver, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="igcnas-ray-driver-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        import optuna

        while not self._stop.wait(self.interval):
            try:
                for trial in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                    if record_of(trial.user_attrs).get(TrialKey.RAY_DRIVER) == self.driver:
                        try:
                            set_trial_system_attr(self.study, trial, SystemKey.DRIVER_LEASE, time.time())
                        except optuna.exceptions.UpdateFinishedTrialError:
                            pass  # it finished meanwhile
            except Exception as exc:  # noqa: BLE001 - a storage hiccup: the next beat tries again
                log.warning("renewing the Ray driver's lease failed: %s: %s", type(exc).__name__, exc)


# Attributes of a trial that belong to the run that ran it, not to its parameters: a re-queued copy
# starts without them (a copy marked backend=ray would be exempt from heartbeats under an Optuna worker).
_RUN_ATTRS = (TrialKey.BACKEND, TrialKey.RAY_DRIVER, TrialKey.STATUS, TrialKey.FAIL_REASON, TrialKey.RAY_NODE)


def requeue_orphans(study: Any, *, grace: float) -> list[int]:
    """Fail, then re-queue with the same parameters, every RUNNING Ray trial whose driver is gone.

    Tune trials die with their driver, and Ray trials have no heartbeat, so nothing else would ever
    end them. As with heartbeat-stale trials (``igcnas.nas.storage``): the trial is marked
    ``SystemKey.STALE``, failed with the reason, and re-queued by ``lease.RetryStaleTrial``, the
    re-queue every storage uses (at most ``MAX_STALE_RETRIES`` times). Failing first is the
    claim: of two drivers recovering at once, only the one whose failing succeeds re-queues. Completed
    trials are never touched. Returns the numbers of the trials failed.
    """
    import optuna

    from igcnas.nas.lease import MAX_STALE_RETRIES, RetryStaleTrial

    storage, failed = storage_of(study), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryStaleTrial(max_retry=MAX_STALE_RETRIES)  # the one re-queue rule (drops stale mark, leases)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        record = record_of(trial.user_attrs)
        if record.get(TrialKey.BACKEND) != "ray":
            continue  # an Optuna worker's: its heartbeat tells
        reason = driver_gone(record.get(TrialKey.RAY_DRIVER), trial.system_attrs.get(SystemKey.DRIVER_LEASE),
                             trial.datetime_start, grace=grace)
        if reason is None:
            continue
        try:
            storage.set_trial_system_attr(trial_id_of(trial), SystemKey.STALE, True)
            rewrite_record(storage, trial_id_of(trial), trial.user_attrs,
                           {TrialKey.STATUS: TrialStatus.FAILED, TrialKey.FAIL_REASON: f"{reason}; re-queued"})
            storage.set_trial_state_values(trial_id_of(trial), optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished meanwhile (or another driver failed it first: that one re-queues it)
        failed.append(trial.number)
        log.warning("trial %d: %s; failed and re-queued with the same parameters", trial.number, reason)
        again = copy.deepcopy(trial)
        again.user_attrs = {RECORD_ATTR: {k: v for k, v in record.items() if k not in _RUN_ATTRS}}
        retry(study, again)
    return failed
