"""What the dashboard shows, as plain data (no plotly here): trials, front, history, references.

The payload is JSON-ready and is the single input of the figures
(:mod:`.figures`) and of the page's own script (budget controls, table,
selection), so the live page and the static report show the same thing.

When the study has latency figures the payload also says where MACs mislead:
the front over (accuracy, MACs) against the front over (accuracy, latency), and
the trials on one but not the other (``latency_view``), with the device and
runtime those figures belong to (``latency``).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from igcnas.nas.pareto import ReferencePoint, hypervolume_history, pareto_mask, trials_frame
from igcnas.nas.records import StudyKey

__all__ = ["collect", "stage_details", "zoo_references", "latency_view"]

MAX_HISTORY_POINTS = 400


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


@lru_cache(maxsize=4096)
def _stage_detail(family: str, stage_json: str, index: int) -> dict[str, Any]:
    from igcnas.search_space.config import StageConfig
    from igcnas.search_space.describe import stage_report

    data = json.loads(stage_json)
    if isinstance(data.get("chain"), list):
        data["chain"] = tuple(data["chain"])
    return stage_report(family, StageConfig(**data), index, layers=True)


def stage_details(config: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per stage: complementary/balance status and the layer sequence to draw."""
    if not config:
        return []
    out = []
    for index, stage in enumerate(config.get("stages", [])):
        try:
            out.append(_stage_detail(config["family"], json.dumps(stage, sort_keys=True), index))
        except (ValueError, TypeError, KeyError) as exc:
            out.append({"error": str(exc)})
    return out


def zoo_references(shape: dict[str, int] | None, trials: pd.DataFrame) -> list[dict[str, Any]]:
    """The paper's networks rebuilt for the study's input shape: closed-form costs, accuracy if evaluated."""
    from igcnas.search_space.costs import closed_form_costs
    from igcnas.search_space.enumerate import arch_id
    from igcnas.search_space.paper_networks import ZOO

    refs = []
    by_arch = {}
    if len(trials):
        done = trials[trials["state"] == "COMPLETE"]
        by_arch = {a: acc for a, acc in zip(done["arch_id"], done["val_accuracy"]) if a}
    for name, entry in ZOO.items():
        config = entry.config
        if config.family == "igcv3" or name.endswith("_flat"):
            continue  # ImageNet-only and single-stage illustrations are not comparable here
        if shape:
            try:
                config = config.replace(in_channels=shape["in_channels"], input_size=shape["input_size"],
                                        num_classes=shape["num_classes"])
            except ValueError:
                continue
        costs = closed_form_costs(config)
        aid = arch_id(config)
        refs.append({"name": name, "family": config.family, "params": costs.params, "macs": costs.macs,
                     "arch_id": aid, "val_accuracy": _num(by_arch.get(aid))})
    return refs


def _history(df: pd.DataFrame, reference: ReferencePoint | None) -> dict[str, list[Any]]:
    done = df[df["state"] == "COMPLETE"].sort_values("number")
    out: dict[str, list[Any]] = {"number": [], "hypervolume": [], "accuracy": [], "best_accuracy": []}
    if done.empty:
        return out
    # The search's progress: its own figures, not those igc-nas refine added later for a few finalists.
    accuracy = done["search_val_accuracy"].to_numpy(dtype=float)
    out["accuracy"] = [_num(a) for a in accuracy]
    out["number"] = [int(n) for n in done["number"]]
    out["best_accuracy"] = [_num(a) for a in np.maximum.accumulate(np.nan_to_num(accuracy, nan=0.0))]
    if reference is not None:
        hv = hypervolume_history(done, reference)
        out["hypervolume"] = [_num(v) for v in hv["hypervolume"]]
    if len(out["number"]) > MAX_HISTORY_POINTS:  # keep the page light: evenly spaced points + the last
        keep = sorted(set(np.linspace(0, len(out["number"]) - 1, MAX_HISTORY_POINTS).astype(int).tolist()))
        for key in ("number", "hypervolume", "best_accuracy"):
            if out[key]:
                out[key] = [out[key][i] for i in keep]
    return out


def _front_over(df: pd.DataFrame, cost: str) -> np.ndarray:
    """Mask of the (accuracy, ``cost``) front, by the same rule as every other front (complete, feasible).

    :func:`~igcnas.nas.pareto.pareto_mask` ranks accuracy, params and MACs; with ``cost`` in both
    cost columns that is exactly the two-objective front, since (a, c, c) dominates (a', c', c') just
    when (a, c) dominates (a', c'). So no second notion of dominance is written here.
    """
    frame = pd.DataFrame({"state": df["state"], "feasible": df["feasible"], "val_accuracy": df["val_accuracy"],
                          "params": df[cost], "macs": df[cost]})
    return pareto_mask(frame)


def latency_view(df: pd.DataFrame) -> dict[str, list[int]] | None:
    """The (accuracy, MACs) and (accuracy, latency) fronts and where they disagree; None without latency.

    Both fronts are taken over the same trials (those with a latency figure), so a trial is in
    ``macs_only`` only because MACs call it efficient and latency does not, never because the two
    fronts looked at different trials. ``macs_only`` is where MACs mislead a pick; ``latency_only``
    is what MACs alone would have passed over.
    """
    if not len(df) or not df["latency_ms"].notna().any():
        return None
    timed = df[df["latency_ms"].notna()]
    numbers = timed["number"].to_numpy()
    by_macs = {int(n) for n in numbers[_front_over(timed, "macs")]}
    by_latency = {int(n) for n in numbers[_front_over(timed, "latency_ms")]}
    return {"front": sorted(by_latency), "macs_front": sorted(by_macs),
            "macs_only": sorted(by_macs - by_latency), "latency_only": sorted(by_latency - by_macs)}


def _latency_record(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """Source and device/runtime words of the study's latency figures (what a latency budget is about)."""
    record = attrs.get(StudyKey.LATENCY)
    if not isinstance(record, dict):
        return None
    return {"source": record.get("source"), "describe": record.get("describe")}


def collect(study: Any) -> dict[str, Any]:
    """The dashboard payload for ``study`` (an empty study gives an empty, valid payload)."""
    df = trials_frame(study)
    attrs = study.user_attrs
    reference = ReferencePoint.from_dict(attrs[StudyKey.REFERENCE_POINT]) if StudyKey.REFERENCE_POINT in attrs else None
    mask = pareto_mask(df) if len(df) else np.zeros(0, dtype=bool)
    # With a latency budget the pick is taken on the front that also counts latency (as igc-nas pick does).
    mask_latency = pareto_mask(df, with_latency=True) if len(df) else np.zeros(0, dtype=bool)
    latency = _latency_record(attrs)
    view = latency_view(df)
    on_latency_front = set(view["front"]) if view else set()
    default_source = latency["source"] if latency else "measured"
    trials = [_trial_entry(row, on_front, on_front_latency, on_latency_front, default_source)
              for row, on_front, on_front_latency in zip(df.itertuples(index=False), mask, mask_latency)]
    front_numbers = [t["number"] for t in trials if t["front"]]
    return {
        "study": study.study_name,
        "dataset": attrs.get(StudyKey.DATASET),
        "directions": [d.name.lower() for d in study.directions],
        "reference_point": reference.as_dict() if reference else None,
        "n_trials": len(df),
        "n_complete": int((df["state"] == "COMPLETE").sum()) if len(df) else 0,
        "trials": trials,
        "front": front_numbers,
        "history": _history(df, reference),
        "zoo": zoo_references(_input_shape(attrs.get(StudyKey.SEARCH_SPEC) or {}), df),
        # Whether any trial has a latency figure, predicted or measured (the name predates prediction).
        "latency_measured": view is not None,
        "latency": latency,
        "latency_view": view,
    }


def _input_shape(spec: dict[str, Any]) -> dict[str, int] | None:
    """The study's input shape (channels, size, classes) from its recorded search space; None when incomplete."""
    if not spec:
        return None
    shape = {k: int(spec[k]) for k in ("in_channels", "input_size", "num_classes") if k in spec}
    return shape if len(shape) == 3 else None


def _trial_entry(row: Any, on_front: bool, on_front_latency: bool, on_latency_front: set[int],
                 default_source: str) -> dict[str, Any]:
    """One trial of the payload: its figures, which fronts it is on and, on the front, its stages and config."""
    config = json.loads(row.config) if on_front and isinstance(row.config, str) else None
    number = int(row.number)
    latency_ms = _num(row.latency_ms)
    entry = {
        "number": number,
        "state": row.state,
        "status": row.status,
        "val_accuracy": _num(row.val_accuracy),  # the highest fidelity the trial has (igc-nas refine)
        "search_val_accuracy": _num(row.search_val_accuracy),
        "fidelity": row.fidelity if isinstance(row.fidelity, str) else "search",
        "params": _num(row.params),
        "macs": _num(row.macs),
        "latency_ms": latency_ms,
        "latency_measured_ms": _num(row.latency_measured_ms),
        # Searches without a table time the network before training and did not write the source.
        "latency_source": (row.latency_source or default_source) if latency_ms is not None else None,
        "feasible": bool(row.feasible),
        "front": bool(on_front),
        "front_latency": number in on_latency_front,
        "front_with_latency": bool(on_front_latency),
        "family": row.family,
        "structure": row.structure or "",
        "curve": json.loads(row.curve) if isinstance(row.curve, str) else [],
    }
    if on_front:
        entry["stages"] = stage_details(config)
        entry["config"] = config
    return entry
