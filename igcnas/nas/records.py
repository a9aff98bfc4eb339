"""What a search writes into an Optuna study: the one home of every key and status.

A study is the search's only database: every process (Optuna workers, Ray
trials, the dashboard, ``igc-nas pick``, the benchmarks) reads and writes these
names, so they are defined here once and imported everywhere else.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TrialStatus", "TrialKey", "StudyKey", "refine_key"]


class TrialStatus(StrEnum):
    """Why a trial ended where it did (the ``status`` user attribute; Optuna's state says less)."""

    COMPLETE = "complete"  # trained for every epoch; its objective values are final
    OVER_BUDGET = "over_budget"  # a cost exceeded the budget before training; never trained (PRUNED)
    STOPPED_EARLY = "stopped_early"  # trained to a rung and stopped by successive halving (PRUNED)
    FAILED = "failed"  # raised, diverged, or ran past a limit (FAIL)
    NO_SLOT = "no_slot"  # the study-wide --total-trials target was already taken by other workers (PRUNED)
    RUNNING = "running"


class TrialKey(StrEnum):
    """User-attribute names of a trial."""

    STATUS = "status"
    CONFIG = "config"
    ARCH_ID = "arch_id"
    FAMILY = "family"
    WIDTH = "width"
    BLOCKS = "blocks"
    STRUCTURE = "structure"
    PARAMS = "params"
    CONV_PARAMS = "conv_params"
    MACS = "macs"
    LATENCY_MS = "latency_ms"  # the latency objective: predicted from the latency table when there is one
    LATENCY_SOURCE = "latency_source"  # "predicted" (latency table, before training) or "measured"
    LATENCY_MEASURED_MS = "latency_measured_ms"  # the trained network timed again after training (with a table)
    CURVE = "curve"  # validation accuracy after each epoch
    EPOCHS = "epochs"  # epochs trained
    RUNGS = "rungs"  # {epoch: accuracy} at the early-stopping rungs reached
    FIDELITY = "fidelity"  # the training schedule, see early_stopping.fidelity_key
    STOPPED_AT_EPOCH = "stopped_at_epoch"
    STOP_REASON = "stop_reason"
    FAIL_REASON = "fail_reason"
    WEIGHTS_ARTIFACT = "weights_artifact"
    BACKEND = "backend"
    RAY_NODE = "ray_node"
    # The Ray driver that runs the trial ({host, pid, start_ticks, started}): a later driver on the same
    # machine fails and re-queues the trial once that process is gone (nas/backends/ray_backend.py).
    RAY_DRIVER = "ray_driver"
    DEVICE = "device"  # where the trial trained (cpu, cuda:N)
    PRECISION = "precision"
    LATENCY_DEVICE = "latency_device"  # where latency was measured (always a fixed-thread CPU run)
    # System attribute set on a RUNNING trial found stale (its worker stopped beating): tells a stale
    # failure, which is retried, from a trial that failed by its own error (nas/storage.py).
    STALE = "igcnas:stale"
    # System attribute on a RUNNING Ray trial: when (epoch seconds) its driver last said it lives; a later
    # driver on another machine takes the trial for an orphan once this is older than the grace period.
    DRIVER_LEASE = "igcnas:driver_lease"
    LEASE = "igcnas:lease"  # system attribute: wall-clock time of a trial's last beat (nas/lease.py)


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
