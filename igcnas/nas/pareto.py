"""Pareto fronts, hypervolume and exports of a study (data only; figures live in ``dashboards``).

Objectives: maximise validation accuracy, minimise params, minimise MACs
(optionally also latency). For the hypervolume every objective is turned into a
loss in [0, 1]-ish units against a **declared, fixed** reference: error = 1 -
accuracy, params / ref_params, MACs / ref_macs (latency / ref_latency_ms); the
reference point is 1 in every coordinate. The study stores the reference when
it is created so that every later reading, from either backend, uses the same
one. Hypervolume and non-dominated sorting use Optuna's maintained
implementations.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from igcnas.nas.budget import is_feasible, named_constraints
from igcnas.nas.objectives import LATENCY, OBJECTIVES
from igcnas.nas.optuna_adapter import compute_hypervolume, storage_of, study_id_of, trial_id_of
from igcnas.nas.records import TrialKey, record_of
from igcnas.nas.selection import dominates, nondominated_mask

_BASE = [o.name for o in OBJECTIVES]  # val_accuracy, params, macs: the columns every front is over
from igcnas.errors import BadInput
from igcnas.files import atomic_write

__all__ = ["ReferencePoint", "trials_frame", "at_search_fidelity", "pareto_mask", "pareto_front",
           "hypervolume",
           "hypervolume_history", "export_trials"]


@dataclass(frozen=True)
class ReferencePoint:
    """Normalisers of the cost objectives; the reference point is (1, 1, 1[, 1]) after normalising."""

    params: float
    macs: float
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferencePoint:
        return cls(params=float(data["params"]), macs=float(data["macs"]),
                   latency_ms=None if data.get("latency_ms") is None else float(data["latency_ms"]))


def _loads(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


_COLUMNS = ["number", "state", "val_accuracy", "params", "macs", "latency_ms", "latency_source", "latency_measured_ms",
            "family", "width", "arch_id",
            "structure", "epochs", "curve", "config", "feasible", "constraints", "status", "fail_reason",
            "datetime_start", "datetime_complete", "duration_s"]

# Rows of finished trials already built in this process, per storage object and study: a finished trial
# never changes, so writing the outputs again (finish, then the dashboard; a live dashboard's every
# refresh) rebuilds only the rows of trials that were unfinished or new.
_FINISHED_ROWS: weakref.WeakKeyDictionary[Any, dict[int, dict[int, tuple[Any, dict[str, Any]]]]] = (
    weakref.WeakKeyDictionary())
_ROWS_LOCK = threading.Lock()


def trials_frame(study: Any) -> pd.DataFrame:
    """One row per trial with objectives, costs, architecture fields, constraints and feasibility."""
    try:
        with _ROWS_LOCK:
            cache = _FINISHED_ROWS.setdefault(storage_of(study), {}).setdefault(study_id_of(study), {})
    except TypeError:  # a storage that cannot be weakly referenced: nothing kept
        cache = {}
    n_objectives = len(study.directions)
    rows = []
    for t in study.get_trials(deepcopy=False):
        kept = cache.get(t.number)
        # The same trial only: a study deleted and created again may reuse the number (and the id).
        if kept is not None and kept[0] == (trial_id_of(t), t.datetime_complete):
            rows.append(kept[1])
            continue
        row = _row(t, n_objectives)
        if t.state.is_finished():
            cache[t.number] = ((trial_id_of(t), t.datetime_complete), row)
        rows.append(row)
    return _with_refined(pd.DataFrame(rows, columns=_COLUMNS), study.user_attrs)


def _with_refined(df: pd.DataFrame, attrs: dict[str, Any]) -> pd.DataFrame:
    """``val_accuracy`` at each trial's highest fidelity: refined (mean over seeds) where refine ran, beside
    ``search_val_accuracy`` (the objective value), ``fidelity`` (which one), ``refined_epochs/seeds/std``."""
    from igcnas.nas.refined import refined_results

    refined = refined_results(attrs)
    df["search_val_accuracy"] = df["val_accuracy"]
    # Always a string (pandas 3 keeps text columns as strings and would turn None into NaN).
    df["fidelity"] = ["search" if e is None or e != e else f"search, {int(e)} epochs" for e in df["epochs"]]
    df["refined_epochs"] = math.nan
    df["refined_seeds"] = 0
    df["refined_std"] = math.nan
    for i, number in enumerate(df["number"]):
        r = refined.get(int(number))
        if r is None or not r.accuracies or df.at[i, "state"] != "COMPLETE":
            continue
        df.at[i, "val_accuracy"] = r.mean
        df.at[i, "fidelity"] = "refined, " + r.words()
        df.at[i, "refined_epochs"] = r.epochs
        df.at[i, "refined_seeds"] = len(r.accuracies)
        df.at[i, "refined_std"] = r.std
    return df


def at_search_fidelity(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every trial's accuracy as the search measured it (the study's objective values).

    The hypervolume and the choice of finalists are about the search, so they read this; picking reads
    the highest fidelity.
    """
    if "search_val_accuracy" not in df:
        return df
    out = df.copy()
    out["val_accuracy"] = out["search_val_accuracy"]
    return out


def _row(t: Any, n_objectives: int) -> dict[str, Any]:
    attrs = record_of(t.user_attrs)
    constraints = named_constraints(t.constraints)
    values = t.values if t.values is not None else [math.nan] * n_objectives
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "val_accuracy": values[0] if len(values) > 0 else math.nan,
        "params": values[1] if len(values) > 1 else attrs.get(TrialKey.PARAMS, math.nan),
        "macs": values[2] if len(values) > 2 else attrs.get(TrialKey.MACS, math.nan),
        "latency_ms": values[3] if len(values) > 3 else attrs.get(TrialKey.LATENCY_MS, math.nan),
        "latency_source": attrs.get(TrialKey.LATENCY_SOURCE),
        "latency_measured_ms": attrs.get(TrialKey.LATENCY_MEASURED_MS, math.nan),
        "family": attrs.get(TrialKey.FAMILY),
        "width": attrs.get(TrialKey.WIDTH),
        "arch_id": attrs.get(TrialKey.ARCH_ID),
        "structure": attrs.get(TrialKey.STRUCTURE),
        "epochs": attrs.get(TrialKey.EPOCHS),
        "curve": json.dumps(_loads(attrs.get(TrialKey.CURVE, []))),
        "config": json.dumps(_loads(attrs.get(TrialKey.CONFIG))),
        "feasible": is_feasible(constraints),
        "constraints": json.dumps(constraints),
        "status": attrs.get(TrialKey.STATUS, t.state.name.lower()),
        "fail_reason": t.system_attrs.get(TrialKey.FAIL_REASON) or attrs.get(TrialKey.FAIL_REASON) or (
            "stopped without finishing (process killed or interrupted; no heartbeat)"
            if t.state.name == "FAIL" else None),
        "datetime_start": t.datetime_start,
        "datetime_complete": t.datetime_complete,
        "duration_s": t.duration.total_seconds() if t.duration else math.nan,
    }
    if row["params"] is None or (isinstance(row["params"], float) and math.isnan(row["params"])):
        row["params"] = attrs.get(TrialKey.PARAMS, math.nan)
    if row["macs"] is None or (isinstance(row["macs"], float) and math.isnan(row["macs"])):
        row["macs"] = attrs.get(TrialKey.MACS, math.nan)
    return row


def _objective_columns(df: pd.DataFrame, with_latency: bool) -> list[str]:
    cols = list(_BASE)
    if with_latency and LATENCY.name in df and df[LATENCY.name].notna().any():
        cols.append(LATENCY.name)
    return cols


def _losses(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    losses = df[cols].to_numpy(dtype=float).copy()
    losses[:, 0] = -losses[:, 0]  # maximise accuracy
    return losses


def pareto_mask(df: pd.DataFrame, *, with_latency: bool = False) -> np.ndarray:
    """Boolean mask over ``df``: complete, feasible and not dominated by another such trial."""
    mask = np.zeros(len(df), dtype=bool)
    candidates = (df["state"] == "COMPLETE") & df["feasible"].astype(bool)
    cols = _objective_columns(df, with_latency)
    candidates &= df[cols].notna().all(axis=1)
    idx = np.flatnonzero(candidates.to_numpy())
    if len(idx):
        mask[idx] = nondominated_mask(_losses(df.iloc[idx], cols))
    return mask


def pareto_front(df: pd.DataFrame, *, with_latency: bool = False) -> pd.DataFrame:
    """The non-dominated feasible trials, most accurate first."""
    front = df[pareto_mask(df, with_latency=with_latency)]
    return front.sort_values(["val_accuracy", "params"], ascending=[False, True])


def _normalised(df: pd.DataFrame, reference: ReferencePoint, with_latency: bool) -> np.ndarray:
    cols = list(_BASE)
    scale = [1.0, reference.params, reference.macs]
    if with_latency and reference.latency_ms is not None:
        cols.append("latency_ms")
        scale.append(reference.latency_ms)
    values = df[cols].to_numpy(dtype=float)
    out = values / np.asarray(scale)
    out[:, 0] = 1.0 - values[:, 0]
    return out


def hypervolume(df: pd.DataFrame, reference: ReferencePoint, *, with_latency: bool = False) -> float:
    """Hypervolume of the feasible complete trials, normalised objectives, reference point all ones."""
    df = at_search_fidelity(df)
    ok = (df["state"] == "COMPLETE") & df["feasible"].astype(bool) & df[_BASE].notna().all(axis=1)
    points = _normalised(df[ok], reference, with_latency)
    if len(points) == 0:
        return 0.0
    ref = np.ones(points.shape[1])
    points = points[(points < ref).all(axis=1)]  # points outside the reference box add nothing
    if len(points) == 0:
        return 0.0
    return float(compute_hypervolume(points, ref, assume_pareto=False))


def hypervolume_history(df: pd.DataFrame, reference: ReferencePoint, *, with_latency: bool = False,
                        order: str = "number") -> pd.DataFrame:
    """Hypervolume after each trial (in ``order``), recomputed on the front so far."""
    ordered = at_search_fidelity(df).sort_values(order)
    ok = ((ordered["state"] == "COMPLETE") & ordered["feasible"].astype(bool)
          & ordered[_BASE].notna().all(axis=1)).to_numpy()
    points = _normalised(ordered, reference, with_latency)
    ref = np.ones(points.shape[1])
    history, front = [], np.empty((0, points.shape[1]))
    value = 0.0
    for i in range(len(ordered)):
        if ok[i] and (points[i] < ref).all():
            p = points[i]
            if not dominates(front, p[None, :]).any():
                front = np.vstack([front[~dominates(p[None, :], front)[0]], p])
                value = float(compute_hypervolume(front, ref, assume_pareto=True))
        history.append(value)
    return pd.DataFrame({order: ordered[order].to_numpy(), "number": ordered["number"].to_numpy(),
                         "hypervolume": history})


def export_trials(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to CSV or Parquet (by extension), via a temporary file so nothing is half-written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise BadInput(f"export path must end in .csv or .parquet, got {str(path)!r}")
    if suffix == ".csv":
        return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
