"""What the dashboard shows, as plain data (no plotly here): trials, front, history, references.

The payload is JSON-ready and is the single input of the figures
(:mod:`.figures`) and of the page's own script (budget controls, table,
selection), so the live page and the static report show the same thing.
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

__all__ = ["collect", "stage_details", "zoo_references"]

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
    from igcnas.search_space.zoo import ZOO

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
    accuracy = done["val_accuracy"].to_numpy(dtype=float)
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


def collect(study: Any) -> dict[str, Any]:
    """The dashboard payload for ``study`` (an empty study gives an empty, valid payload)."""
    df = trials_frame(study)
    attrs = study.user_attrs
    reference = ReferencePoint.from_dict(attrs[StudyKey.REFERENCE_POINT]) if StudyKey.REFERENCE_POINT in attrs else None
    mask = pareto_mask(df) if len(df) else np.zeros(0, dtype=bool)
    spec = attrs.get(StudyKey.SEARCH_SPEC) or {}
    shape = None
    if spec:
        shape = {k: int(spec[k]) for k in ("in_channels", "input_size", "num_classes") if k in spec}
        if len(shape) != 3:
            shape = None
    trials = []
    for row, on_front in zip(df.itertuples(index=False), mask):
        config = json.loads(row.config) if on_front and isinstance(row.config, str) else None
        entry = {
            "number": int(row.number),
            "state": row.state,
            "status": row.status,
            "val_accuracy": _num(row.val_accuracy),
            "params": _num(row.params),
            "macs": _num(row.macs),
            "latency_ms": _num(row.latency_ms),
            "feasible": bool(row.feasible),
            "front": bool(on_front),
            "family": row.family,
            "structure": row.structure or "",
            "curve": json.loads(row.curve) if isinstance(row.curve, str) else [],
        }
        if on_front:
            entry["stages"] = stage_details(config)
            entry["config"] = config
        trials.append(entry)
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
        "zoo": zoo_references(shape, df),
        "latency_measured": any(t["latency_ms"] is not None for t in trials),
    }
