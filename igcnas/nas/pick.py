"""Picking the model for a budget, and exporting it.

Rule (shared with the dashboard's highlight, see ``dashboards/page.js``): among
the complete, feasible trials on the Pareto front whose params, MACs (and
latency, when a latency budget is given) are within the budget, take the
most accurate (the front then counts latency too); ties go to fewer MACs, then fewer params,
then the lower trial number. The most accurate trial within a budget is
always on the front, so restricting to the front loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

from igcnas.nas.pareto import pareto_mask
from igcnas.nas.records import StudyKey, TrialKey, record_of
from igcnas.nas.budget import LATENCY_CONSTRAINTS, Budget, is_feasible
from igcnas.errors import BadInput
from igcnas.files import atomic_write_text

if TYPE_CHECKING:
    from igcnas.models.onnx_export import OnnxCheck

__all__ = ["NothingFits", "accuracy_words", "weights_note", "choose", "nearest_over_budget", "export_model", "PickResult", "search_evaluation",
           "load_search_data", "with_predicted_latency", "latency_check"]

log = logging.getLogger(__name__)


class NothingFits(ValueError):
    """No trial on the front meets the budget; carries the nearest ones."""

    def __init__(self, message: str, nearest: pd.DataFrame) -> None:
        super().__init__(message)
        self.nearest = nearest


def _within(df: pd.DataFrame, budget: Budget) -> pd.Series:
    """Which rows fit the budget, by :meth:`Budget.fits` (the search's own rule: inclusive, unrounded)."""
    latency = df["latency_ms"] if "latency_ms" in df else pd.Series(math.nan, index=df.index)
    return pd.Series([budget.fits(params=p, macs=m, latency_ms=None if pd.isna(lat) else float(lat))
                      for p, m, lat in zip(df["params"], df["macs"], latency)], index=df.index, dtype=bool)


def _excess(row: pd.Series, budget: Budget) -> float:
    """Largest relative overshoot of the budget (0 when within); an unknown latency is infinitely over."""
    latency = row.get("latency_ms")
    known = None if latency is None or pd.isna(latency) else float(latency)
    parts = [0.0, *budget.violations(params=row["params"], macs=row["macs"], latency_ms=known).values()]
    if budget.max_latency_ms is not None and known is None:
        parts.append(math.inf)
    return max(parts)


def nearest_over_budget(front: pd.DataFrame, budget: Budget, n: int = 5) -> pd.DataFrame:
    """Front trials ordered by how far over the budget they are (``over_by`` is relative)."""
    out = front.copy()
    out["over_by"] = [_excess(r, budget) for _, r in out.iterrows()]
    return out.sort_values(["over_by", "val_accuracy"], ascending=[True, False]).head(n)


def choose(df: pd.DataFrame, budget: Budget) -> pd.Series:
    """The trial to pick from a trials frame (see the module docstring for the rule)."""
    # The front over every budgeted objective: with a latency budget the most accurate trial within it may be
    # dominated in (accuracy, params, MACs) by a slower one, so latency must count in the front too.
    front = df[pareto_mask(df, with_latency=budget.max_latency_ms is not None)]
    if front.empty:
        raise NothingFits("the study has no complete feasible trials yet", front)
    inside = front[_within(front, budget)]
    if inside.empty:
        nearest = nearest_over_budget(front, budget)
        lines = "; ".join(
            f"trial {int(r.number)} ({r.structure}) acc {r.val_accuracy:.4f}, params {int(r.params):,}, "
            f"MACs {int(r.macs):,}: {100 * r.over_by:.1f}% over" for r in nearest.itertuples()
        )
        raise NothingFits(f"no trial on the front fits the budget; nearest: {lines}", nearest)
    ordered = inside.sort_values(["val_accuracy", "macs", "params", "number"],
                                 ascending=[False, True, True, True])
    return ordered.iloc[0]


def accuracy_words(row: pd.Series) -> str:
    """At which fidelity a row's ``val_accuracy`` was measured, with the search's figure when it was refined."""
    from igcnas.nas.refined import fidelity_words

    return fidelity_words(row.get("fidelity"), row.get("search_val_accuracy"))


def weights_note(row: pd.Series, retrained: int | None) -> str:
    """Where the compared accuracy (refined) and the exported weights (the search's) come from different
    trainings, say so and how to export a network trained as refine trained it."""
    epochs = row.get("refined_epochs")
    if epochs is None or epochs != epochs or retrained == int(epochs):
        return ""
    return (f" (the accuracy compared was measured after {int(epochs)}-epoch trainings by igc-nas refine; "
            f"--retrain-epochs {int(epochs)} exports a network trained that long)")


def with_predicted_latency(df: pd.DataFrame, table: Any) -> pd.DataFrame:
    """``df`` with ``latency_ms`` predicted by ``table`` (its device and runtime) for every trial.

    Picking for a device re-predicts every trial from that device's table, whatever the search recorded
    (a study searched with one table can be picked for another device). A trial the table cannot predict
    (a part it lacks) gets no latency and so never fits a latency budget.
    """
    from igcnas.search_space.config_io import config_from_dict

    def predict(text: Any) -> float:
        data = json.loads(text) if isinstance(text, str) else None
        if not data:
            return math.nan
        try:
            return float(table.predict(config_from_dict(data)))
        except BadInput:
            return math.nan

    out = df.copy()
    out["latency_ms"] = [predict(text) for text in out["config"]]
    # Feasibility is re-judged without the search's latency constraints (another device's, or a measurement
    # on the search's machine): the budget's latency is checked against the new predictions instead.
    out["feasible"] = [is_feasible(json.loads(text or "{}"), ignore=LATENCY_CONSTRAINTS) for text in out["constraints"]]
    return out


def latency_check(config: Any, table: Any, predicted: float) -> tuple[float, list[str]]:
    """Time the picked network again on the table's runtime, threads and batch; (ms, report lines)."""
    from igcnas.evaluators.latency_runtime import Fingerprint, measure_network_ms

    fp = table.fingerprint
    here = Fingerprint.here(runtime=fp.runtime, threads=fp.threads, batch=fp.batch, input_size=fp.input_size,
                            in_channels=fp.in_channels)
    measured = measure_network_ms(config, fp)
    where = fp.describe() if here == fp else f"{here.describe()} (the table is of {fp.describe()}: forced)"
    return measured, [f"- latency: predicted {predicted:.4f} ms by the latency table of {fp.describe()}; "
                      f"measured {measured:.4f} ms ({measured / predicted - 1:+.1%}) at pick time on {where}"]


@dataclass
class PickResult:
    trial_number: int
    directory: Path
    val_accuracy: float
    test_accuracy: float | None
    params: int
    macs: int
    retrained_epochs: int | None
    files: dict[str, Path]
    val_index: tuple[int, ...] = ()  # the validation images it was scored on (the search's split)
    onnx_check: OnnxCheck | None = None  # model.onnx against PyTorch in ONNX Runtime, when it was written


# Validation images that model.onnx is checked on: one batch, enough to see a wrong export.
ONNX_CHECK_IMAGES = 256


def search_evaluation(study: Any) -> dict[str, Any]:
    """How the study's search read its data and trained (recorded by the orchestrator).

    Without it there is no honest validation split to score on: guessing a data set or a seed could
    score the model on images it was trained on, so such a study is refused.
    """
    record = study.user_attrs.get(StudyKey.EVALUATION)
    if not record:
        raise BadInput(f"study {study.study_name!r} does not record how it was searched (data set, split seed, "
                       "validation fraction, training settings); it was made by an older igc-nas or outside it, "
                       "so pick cannot evaluate on its validation split: search it again with this version")
    return dict(record)


def load_search_data(record: dict[str, Any], *, data_dir: str | None = None) -> Any:
    """The search's own data splits: same data set, folder, split seed and validation fraction."""
    from igcnas.evaluators.datasets import load_dataset

    return load_dataset(record["dataset"], data_dir=data_dir or record.get("data_dir"), seed=record["split_seed"],
                        val_fraction=record["val_fraction"], memory_cap_mb=record.get("memory_cap_mb"),
                        cache_dir=record.get("cache_dir"), progress=True)


def export_model(
    *,
    study: Any,
    trial_row: pd.Series,
    directory: str | Path,
    front: pd.DataFrame,
    budget: Budget,
    artifacts_dir: str | None = None,
    retrain: bool = False,
    retrain_epochs: int | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    device: str = "auto",
    onnx: bool | None = None,
    report_notes: tuple[str, ...] = (),
) -> PickResult:
    """Write ``config.json``, ``model.pt`` (state dict), ``model.pt2`` (exported program), ``model.onnx``, report.

    Weights come from the trial's stored artifact, or from retraining (``retrain``) with the search's
    training settings (``retrain_epochs`` overrides the epochs; ``seed`` seeds the retraining). The
    model is scored on the search's validation split and on the untouched test split. Everything is
    written to a temporary folder first and moved into place at the end, so an error leaves nothing
    half-written. ``model.onnx`` is written when the ``[onnx]`` extra is installed (``onnx`` None),
    always (True: an error when it is not installed) or never (False); it is checked against PyTorch
    in ONNX Runtime on validation images, and a mismatch is a warning and a line in the report (the
    other files do not depend on it).
    """
    from igcnas.evaluators.train import evaluate_split
    from igcnas.search_space.config_io import config_from_dict

    number = int(trial_row["number"])
    recorded = record_of(study.trials[number].user_attrs)
    config = config_from_dict(recorded[TrialKey.CONFIG])
    record = search_evaluation(study)
    target = Path(directory)
    write_onnx = _check_export(target, retrain_epochs, onnx)
    data = load_search_data(record, data_dir=data_dir)
    model, retrained = _model_to_export(study, number, recorded, config, record, data, artifacts_dir=artifacts_dir,
                                        retrain=retrain, retrain_epochs=retrain_epochs, seed=seed, device=device)
    model.eval()
    val_accuracy = evaluate_split(model, data, "val")
    test_accuracy = None if data.n_test == 0 else evaluate_split(model, data, "test")

    with _staged(target) as staging:
        files, check = _write_model_files(staging, model, config, data, write_onnx=write_onnx)
        result = PickResult(number, target, val_accuracy, test_accuracy, int(trial_row["params"]),
                            int(trial_row["macs"]), retrained, {k: target / v.name for k, v in files.items()},
                            data.val_index, check)
        atomic_write_text(files["report"], _report_text(study, trial_row, recorded, config, record, data, budget,
                                                        result, front=front, onnx=onnx, notes=report_notes))
    return result


def _check_export(target: Path, retrain_epochs: int | None, onnx: bool | None) -> bool:
    """Refuse an export that could only fail later, before anything is read or trained; whether to write ONNX."""
    from igcnas.models.onnx_export import onnx_available, require_onnx

    if target.exists() and any(target.iterdir()):
        raise BadInput(f"export directory {str(target)!r} exists and is not empty")
    if retrain_epochs is not None and retrain_epochs < 1:
        raise BadInput(f"--retrain-epochs must be >= 1, got {retrain_epochs}")
    if onnx:
        require_onnx()  # before the data is read or anything trained
    return onnx_available() if onnx is None else onnx


@contextlib.contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target``, moved into its place at the end: an error leaves nothing behind."""
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".igcnas-export-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _model_to_export(study: Any, number: int, recorded: dict[str, Any], config: Any, record: dict[str, Any],
                     data: Any, *, artifacts_dir: str | None, retrain: bool, retrain_epochs: int | None, seed: int,
                     device: str) -> tuple[Any, int | None]:
    """The network to export and the epochs it was retrained for (None: the trial's stored weights)."""
    from igcnas.evaluators.settings import settings_from_record
    from igcnas.evaluators.train import train_model
    from igcnas.models import build_model
    from igcnas.nas.study import load_weights

    # Exports (and stored weights) are the deployed network: for structured stages the sum-pool +
    # small-kernel modules that decomposition produces, so that igcnas.models.load rebuilds it.
    model = build_model(config, seed=seed, form="deployed")
    if retrain or retrain_epochs is not None:
        from igcnas.models.decomposition import decompose

        retrained = retrain_epochs or record["epochs"]
        settings = settings_from_record(record, epochs=retrained, seed=seed, progress=True, device=device)
        model = build_model(config, seed=seed, form=settings.model_form)
        train_model(model, data, settings)
        return decompose(model.to("cpu")), retrained
    artifact = recorded.get(TrialKey.WEIGHTS_ARTIFACT)
    store_dir = artifacts_dir or study.user_attrs.get(StudyKey.ARTIFACTS)
    if artifact is None or store_dir is None:
        raise BadInput(f"trial {number} has no stored weights; use --retrain to train it")
    model.load_state_dict(load_weights(artifact, store_dir))
    return model, None


def _write_model_files(staging: Path, model: Any, config: Any, data: Any, *,
                       write_onnx: bool) -> tuple[dict[str, Path], OnnxCheck | None]:
    """Write config.json, model.pt, model.pt2 and (``write_onnx``) model.onnx, checked: (files by label, check)."""
    import torch

    from igcnas.models.onnx_export import check_onnx, export_onnx
    from igcnas.search_space.config_io import config_to_dict

    files = {"config": staging / "config.json", "weights": staging / "model.pt",
             "exported_program": staging / "model.pt2", "report": staging / "report.md"}
    atomic_write_text(files["config"], json.dumps(config_to_dict(config), indent=2))
    torch.save(model.state_dict(), files["weights"])
    example = torch.zeros(2, *config.input_shape)
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(exported, str(files["exported_program"]))
    check = None
    if write_onnx:
        files["onnx"] = export_onnx(model, staging / "model.onnx", tuple(example.shape[1:]))
        images = next(data.eval_batches("val", ONNX_CHECK_IMAGES, device="cpu"))[0]
        check = check_onnx(model, files["onnx"], images)
        if not check.passed:
            log.warning("model.onnx does not match PyTorch: max |difference| of logits %.2e, top-1 agreement "
                        "%.4f (a defect of the ONNX export; the other files are unaffected)",
                        check.max_abs_diff, check.top1_agreement)
    return files, check


def _report_text(study: Any, trial_row: pd.Series, recorded: dict[str, Any], config: Any, record: dict[str, Any],
                 data: Any, budget: Budget, result: PickResult, *, front: pd.DataFrame, onnx: bool | None,
                 notes: tuple[str, ...]) -> str:
    """report.md: what was exported, how it scores, and the Pareto front it was picked from."""
    from igcnas.models.onnx_export import report_lines

    number, check, retrained = result.trial_number, result.onnx_check, result.retrained_epochs
    rank = front.sort_values("val_accuracy", ascending=False).reset_index(drop=True)
    position = int(rank.index[rank["number"] == number][0]) + 1 if number in set(rank["number"]) else None
    lines = [
        f"# igc-nas pick: trial {number} of study `{study.study_name}`",
        "",
        f"- architecture: {trial_row['structure']}",
        f"- arch id: `{recorded.get(TrialKey.ARCH_ID)}`",
        f"- data set: {record['dataset']}",
        *([f"- Structured Convolutions: exported in the deployed form (sum-pool + small kernels); the "
           f"search's projection gap {recorded.get(TrialKey.PROJECTION_GAP)}"]
          if config.structured else []),
        f"- params: {int(trial_row['params']):,}",
        f"- MACs: {int(trial_row['macs']):,} (FLOPs = 2 x MACs = {2 * int(trial_row['macs']):,})",
        f"- validation accuracy (what the pick compared): {float(trial_row['val_accuracy']):.4f} "
        f"({accuracy_words(trial_row)})",
        f"- validation accuracy (exported weights): {result.val_accuracy:.4f}",
        "- test accuracy (exported weights): "
        + ("n/a (no test split)" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"),
        "- weights: " + (f"retrained for {retrained} epochs" if retrained else "the trial's own")
        + weights_note(trial_row, retrained),
        f"- validation split: the search's (seed {record['split_seed']}, fraction {record['val_fraction']}, "
        f"{len(data.val_index)} images)",
        f"- budget: {json.dumps({k: v for k, v in budget.as_dict().items() if v is not None})}",
        *notes,
        f"- position on the Pareto front: {position} of {len(rank)} by accuracy" if position else
        "- position on the Pareto front: not on the front",
        *(report_lines(check) if check is not None else
          [f"- ONNX: not written ({'turned off' if onnx is False else 'onnx/onnxruntime not installed'})"]),
        *([f"- input: float32 (N, C, H, W) pixels x {data.scale:g}, minus mean {_floats(data.mean)}, divided "
           f"by std {_floats(data.std)} (per channel)"] if data.mean is not None and data.std is not None else []),
        "",
        "## Pareto front",
        "",
        "| trial | val acc | measured at | params | MACs | architecture |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for _, r in rank.iterrows():
        mark = " **(picked)**" if int(r["number"]) == number else ""
        lines.append(f"| {int(r['number'])}{mark} | {r['val_accuracy']:.4f} | {accuracy_words(r)} | "
                     f"{int(r['params']):,} | {int(r['macs']):,} | {r['structure']} |")
    lines += ["", "Load it with `igcnas.models.load(DIR)` (a ready `nn.Module` in eval mode), or the "
              "exported program with `torch.export.load(DIR/model.pt2).module()`."]
    return "\n".join(lines) + "\n"


def _floats(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"
