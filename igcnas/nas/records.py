"""What a search writes into an Optuna study: the one home of every key, status and record.

A study is the search's only database: every process (Optuna workers, Ray drivers, the dashboard,
``igc-nas pick``, the benchmarks, the tests' fixtures) reads and writes these names, so they are defined
here once and imported everywhere else.

A trial's record is one typed mapping (:class:`TrialKey` -> value, each key declared with its kind),
stored whole under one user attribute (:data:`RECORD_ATTR`). The process that runs a trial holds the
record in a :class:`TrialRecorder` and writes it in one storage call per phase (chosen, at a rung, at
the end) instead of one call per key: a storage call is a database transaction, or a gRPC round trip
through the proxy. Every reader goes through :func:`record_of`, which also reads trials that older
releases wrote key by key. A key or a value of the wrong kind is refused when written, so a stray
literal fails in the test that writes it.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Mapping

__all__ = ["TrialStatus", "TrialKey", "SystemKey", "StudyKey", "RayKey", "RECORD_ATTR", "record_of",
           "check_record", "TrialRecorder", "rewrite_record", "refine_key"]


class TrialStatus(StrEnum):
    """Why a trial ended where it did (the ``status`` user attribute; Optuna's state says less)."""

    COMPLETE = "complete"  # trained for every epoch; its objective values are final
    OVER_BUDGET = "over_budget"  # a cost exceeded the budget before training; never trained (PRUNED)
    STOPPED_EARLY = "stopped_early"  # trained to a rung and stopped by successive halving (PRUNED)
    FAILED = "failed"  # raised, diverged, or ran past a limit (FAIL)
    NO_SLOT = "no_slot"  # the study-wide --total-trials target was already taken by other workers (PRUNED)
    RUNNING = "running"


# The kinds of value a record key takes.
_INT, _NUMBER, _TEXT, _LIST, _DICT = (int,), (int, float), (str,), (list, tuple), (dict,)


class TrialKey(StrEnum):
    """The keys of a trial's record, each with the kinds of value it takes (``kind``; None is always allowed)."""

    kind: tuple[type, ...]

    def __new__(cls, value: str, kind: tuple[type, ...]) -> TrialKey:
        member = str.__new__(cls, value)
        member._value_ = value
        member.kind = kind
        return member

    STATUS = "status", _TEXT
    CONFIG = "config", _DICT
    ARCH_ID = "arch_id", _TEXT
    FAMILY = "family", _TEXT
    WIDTH = "width", _INT
    BLOCKS = "blocks", _INT
    STRUCTURE = "structure", _TEXT
    PARAMS = "params", _INT
    CONV_PARAMS = "conv_params", _INT
    MACS = "macs", _INT
    LATENCY_MS = "latency_ms", _NUMBER  # the latency objective: predicted from the latency table when there is one
    LATENCY_SOURCE = "latency_source", _TEXT  # "predicted" (latency table, before training) or "measured"
    LATENCY_MEASURED_MS = "latency_measured_ms", _NUMBER  # the trained network timed again (with a table)
    CURVE = "curve", _LIST  # validation accuracy after each epoch
    EPOCHS = "epochs", _INT  # epochs trained
    RUNGS = "rungs", _DICT  # {epoch: accuracy} at the early-stopping rungs reached
    FIDELITY = "fidelity", _TEXT  # the training schedule, see early_stopping.fidelity_key
    STOPPED_AT_EPOCH = "stopped_at_epoch", _INT
    STOP_REASON = "stop_reason", _TEXT
    FAIL_REASON = "fail_reason", _TEXT
    WEIGHTS_ARTIFACT = "weights_artifact", _TEXT
    BACKEND = "backend", _TEXT
    RAY_NODE = "ray_node", _TEXT
    # The Ray driver that runs the trial ({host, pid, start_ticks, started}): a later driver on the same
    # machine fails and re-queues the trial once that process is gone (nas/backends/ray_backend.py).
    RAY_DRIVER = "ray_driver", _DICT
    DEVICE = "device", _TEXT  # where the trial trained (cpu, cuda:N)
    PRECISION = "precision", _TEXT
    LATENCY_DEVICE = "latency_device", _TEXT  # where latency was measured (always a fixed-thread CPU run)
    LATENCY_THREADS = "latency_threads", _INT  # threads of that measurement (latency measured without a table)
    LATENCY_MEASURED_ON = "latency_measured_on", _TEXT  # this process's fingerprint, when it is not the table's
    STRUCTURED_MODE = "structured_mode", _TEXT  # how a Structured Convolution network was trained
    UNPROJECTED_ACCURACY = "unprojected_accuracy", _NUMBER  # its accuracy before projection to the structured form
    PROJECTION_GAP = "projection_gap", _NUMBER  # unprojected minus projected accuracy
    FVCORE_MACS = "fvcore_macs", _NUMBER  # fvcore's count of the trained network (equals MACS; tests check)
    FVCORE_TOTAL = "fvcore_total", _NUMBER  # fvcore's total, operators it counts beyond convolutions and linears
    FVCORE_PARAMS = "fvcore_params", _NUMBER
    TRAIN_LOSS = "train_loss", _LIST  # training loss after each epoch
    TRAIN_SECONDS = "train_seconds", _NUMBER
    IMAGES_PER_SECOND = "images_per_second", _NUMBER


class SystemKey(StrEnum):
    """System-attribute names of a trial: the machinery's own marks, never shown as results."""

    # Set on a RUNNING trial found stale (its worker stopped beating): tells a stale failure, which is
    # retried, from a trial that failed by its own error (nas/lease.py).
    STALE = "igcnas:stale"
    # On a RUNNING Ray trial: when (epoch seconds) its driver last said it lives; a later driver on another
    # machine takes the trial for an orphan once this is older than the grace period.
    DRIVER_LEASE = "igcnas:driver_lease"
    LEASE = "igcnas:lease"  # wall-clock time of a trial's last beat (nas/lease.py)
    EVOLUTION = "evolution"  # how the evolutionary sampler made the trial's genes (nas/evolution.py)
    RETRY_HISTORY = "retry_history"  # written by Optuna's RetryHeartbeatStaleTrialCallback


class StudyKey(StrEnum):
    """User-attribute names of a study (prefixed so that they never clash with a user's own)."""

    DATASET = "igcnas:dataset"
    SEARCH_SPEC = "igcnas:search_spec"
    REFERENCE_POINT = "igcnas:reference_point"
    ARTIFACTS = "igcnas:artifacts"
    OBJECTIVES = "igcnas:objectives"
    # How the search read its data and trained (data set, folder, split seed, validation fraction,
    # epochs, batch, lr, ...): what `igc-nas pick` needs to evaluate on the same validation split.
    EVALUATION = "igcnas:evaluation"
    # The device and runtime the latency figures belong to (the latency table's fingerprint and file).
    LATENCY = "igcnas:latency"
    # `igc-nas refine` (nas/refine.py): one study attribute per finalist, training length and seed, so that
    # workers never write the same key and the search-time values on the trial are never touched (Optuna
    # does not let a finished trial be written). ``REFINED:<trial>:<epochs>:<seed>`` holds the result;
    # ``REFINING:<trial>:<epochs>:<seed>`` the claim of the worker or Ray driver training it (owner, beat).
    REFINED = "igcnas:refined"
    REFINING = "igcnas:refining"


def refine_key(prefix: str, trial: int, epochs: int, seed: int) -> str:
    """The study attribute of one refinement unit under ``prefix`` (StudyKey.REFINED or StudyKey.REFINING)."""
    return f"{prefix}:{int(trial)}:{int(epochs)}:{int(seed)}"


# The user attribute that holds a trial's whole record (a JSON object).
RECORD_ATTR = "igcnas:record"

_KEYS = frozenset(k.value for k in TrialKey)


def check_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a plain dict keyed by :class:`TrialKey` values; ValueError naming a key that is not a
    record key, or a value not of its key's kind."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _KEYS:
            raise ValueError(f"'{key}' is not a trial record key (igcnas.nas.records.TrialKey)")
        kind = TrialKey(key).kind
        if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and bool not in kind)):
            raise ValueError(f"trial record key '{key}': expected {'/'.join(k.__name__ for k in kind)}, "
                             f"got {type(value).__name__} {value!r}")
        out[str(key)] = list(value) if isinstance(value, tuple) else value
    return out


def record_of(user_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's record from its user attributes (``trial.user_attrs``): the packed record, over any keys an
    older release wrote one attribute each (a study resumed across the change has both kinds of trial)."""
    packed = user_attrs.get(RECORD_ATTR)
    flat = {k: v for k, v in user_attrs.items() if k in _KEYS}
    if not packed:
        return flat
    return {**flat, **packed} if flat else dict(packed)


class TrialRecorder:
    """A trial's record as the process that runs the trial holds it, written whole, once per phase.

    :meth:`update` changes the record in memory; :meth:`write` stores it in one ``set_user_attr`` call;
    :meth:`write_progress` stores it only when the last write is at least ``progress_seconds`` old (a
    running trial's curve for the live dashboard, without a storage call per epoch).
    """

    progress_seconds = 10.0

    def __init__(self, trial: Any, values: Mapping[str, Any] | None = None) -> None:
        self.trial = trial
        self.values: dict[str, Any] = check_record(values or {})
        self._written = float("-inf")

    @classmethod
    def resume(cls, trial: Any) -> TrialRecorder:
        """The record ``trial`` has in the storage, to be written again with more: taken as stored (it was
        checked when written), so an old release's key of another kind does not stop the new write."""
        recorder = cls(trial)
        recorder.values.update(record_of(trial.user_attrs))
        return recorder

    def update(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> TrialRecorder:
        self.values.update(check_record({**(values or {}), **more}))
        return self

    def write(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self.update(values, **more)
        self.trial.set_user_attr(RECORD_ATTR, dict(self.values))
        self._written = time.monotonic()

    def write_progress(self) -> None:
        if time.monotonic() - self._written >= self.progress_seconds:
            self.write()


def rewrite_record(storage: Any, trial_id: int, user_attrs: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    """Store a trial's record with ``changes``, from a process that does not run it (a Ray driver recovering
    a trial whose driver is gone): its recorded ``user_attrs`` merged with the changes, in one call."""
    storage.set_trial_user_attr(trial_id, RECORD_ATTR, {**record_of(user_attrs), **check_record(changes)})


class RayKey(StrEnum):
    """Names in what a Ray Tune trial is given (its config) and reports (its results): the Ray transport of a
    trial's record between the driver, which owns the Optuna trial, and the node that trains it."""

    CONFIG = "igcnas_config"  # the network, as config_to_dict
    STATUS = "igcnas_status"  # a TrialStatus
    NUMBER = "igcnas_number"  # the Optuna trial number (the training seed derives from it)
    RUN = "igcnas_run"  # how to train: evaluators.settings' evaluation record, plus the fidelity key
    LATENCY_MS = "igcnas_latency_ms"  # predicted on the driver, before training
    PARAMS = "igcnas_params"
    MACS = "igcnas_macs"
    CURVE = "igcnas_curve"  # JSON list of accuracies so far
    RECORD = "igcnas_attrs"  # JSON object: the trial's record (TrialKey keys)
    CONSTRAINTS = "igcnas_constraints"  # JSON object of constraint values
    ERROR = "igcnas_error"
    NODE = "igcnas_node"  # which machine trained it: finds slow or faulty nodes
    WEIGHTS = "igcnas_weights"  # the trained state dict, ``torch.save`` bytes
    EPOCH = "epoch"  # the training iteration Tune's schedulers count
    ACCURACY = "val_accuracy_epoch"  # validation accuracy after that epoch
