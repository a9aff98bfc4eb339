"""One search, start to end: prepare, hand to a backend, write the outputs.

``run_search`` is the only entry point the command line uses. It validates the
options against the chosen backend (an option the backend would ignore is
refused), loads the data, checks the budget against the space's exact cost
bounds, opens the study and records on it everything later readers need
(data set and split, training settings, objectives, reference point, search
space), enqueues the seed networks into a new study, runs the backend, and
writes ``trials.csv``, ``pareto.csv`` and ``summary.json``. Writing the
dashboard is the caller's business (``nas`` never imports ``dashboards``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from igcnas.errors import BadInput, SearchFailed
from igcnas.files import atomic_write_text
from igcnas.nas.backends import Backend, BackendReport, PreparedSearch, TrialCallback, get_backend
from igcnas.nas.options import BACKENDS, SearchOptions, flag_of
from igcnas.nas.records import StudyKey, TrialStatus
from igcnas.search_space.spec import SearchSpec, space_bounds

__all__ = ["PreparedSearch", "SearchOutcome", "SearchFailed", "prepare", "run_search", "finish",
           "check_backend_options"]

log = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    study: Any
    run_dir: Path
    storage_url: str
    report: BackendReport
    files: dict[str, Path] = field(default_factory=dict)
    front: Any = None  # pandas DataFrame
    hypervolume: float = 0.0


def check_backend_options(options: SearchOptions, backend: Backend) -> None:
    """Refuse options the backend would not honour, naming the flag."""
    for name in sorted(backend.unsupported & set(options.changed())):
        others = [n for n in BACKENDS if n != backend.name]
        raise BadInput(f"{flag_of(name)} is not supported by the {backend.name} backend "
                       f"(it applies to --backend {', '.join(others)})")


def prepare(options: SearchOptions, *, data: Any = None, evaluate: Callable[..., Any] | None = None) -> PreparedSearch:
    """Load data, build the space, check budgets against it, open the study and record the search on it.

    Everything that can be wrong with the input fails here, before the study is touched. ``data``: the
    data set already loaded (the options' is not read); ``evaluate``: what trains and measures a trial
    (default ``nas.trial_evaluation.evaluate_config``), which then owns its device (``--device`` is not checked).
    The scale benchmark passes both: a synthetic trial needs neither images nor a device.
    """
    import optuna

    from igcnas.evaluators.datasets import load_dataset
    from igcnas.nas.study import open_storage, open_study
    from igcnas.search_space.genome import genome_for

    _check_devices_and_data_dir(options, evaluate)
    if data is None:
        data = load_dataset(options.dataset, data_dir=options.data_dir, download=options.download,
                            seed=options.seed, val_fraction=options.val_fraction,
                            memory_cap_mb=options.memory_cap_mb, cache_dir=options.cache_dir, progress=True)
    spec = SearchSpec.for_data(in_channels=data.in_channels, input_size=data.input_size,
                               num_classes=data.num_classes, families=options.families, widths=options.widths,
                               blocks=options.blocks, max_l=options.max_l, structured=options.structured)
    bounds = space_bounds(spec)
    latency_table = load_latency_table(options, spec) if options.latency_table else None
    _check_budget_reachable(options.budget, bounds)
    if not options.storage:
        options.run_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(options.storage_url, heartbeat_interval=options.heartbeat_interval,
                           grace_period=options.grace_period)
    study = open_study(storage, options.study_name, create=True, objectives=options.objectives)
    attrs = study.user_attrs
    evaluation = options.evaluation_record()
    recorded = _check_same_search(attrs, options, evaluation)
    genome = genome_for(spec)
    reference = _record_search(study, attrs, options, spec, bounds, genome)
    if recorded is None:
        study.set_user_attr(StudyKey.EVALUATION, evaluation)
    if options.measure_latency:
        record_latency_source(study, options, latency_table)
    if options.save_weights and attrs.get(StudyKey.ARTIFACTS) != str(options.artifacts_path.resolve()):
        study.set_user_attr(StudyKey.ARTIFACTS, str(options.artifacts_path.resolve()))
    earlier = frozenset(t.number for t in study.get_trials(deepcopy=False)
                        if t.state != optuna.trial.TrialState.WAITING)
    prepared = PreparedSearch(options, spec, genome, data, storage, study, reference, earlier, latency_table)
    return prepared if evaluate is None else replace(prepared, evaluate=evaluate)


def _check_devices_and_data_dir(options: SearchOptions, evaluate: Callable[..., Any] | None) -> None:
    """Refuse a device this machine lacks (when trials train here) and a --data-dir that is not there."""
    if options.backend == "optuna" and evaluate is None:  # trials train here: a missing device is bad input
        from igcnas.evaluators.device import resolve_device, resolve_precision

        for device in options.devices or (options.device,):
            resolve_precision(options.precision, resolve_device(device))
    if options.data_dir is not None and not Path(options.data_dir).expanduser().exists() and not options.download:
        raise BadInput(f"--data-dir {options.data_dir!r} does not exist")


def _check_budget_reachable(budget: Any, bounds: Any) -> None:
    """Refuse a params or MACs budget below the space's smallest network."""
    if budget.max_params is not None and bounds.min_params > budget.max_params:
        raise BadInput(f"no configuration meets --max-params {budget.max_params:,.0f}: the smallest network in "
                       f"this space has {bounds.min_params:,} params")
    if budget.max_macs is not None and bounds.min_macs > budget.max_macs:
        raise BadInput(f"no configuration meets --max-macs {budget.max_macs:,.0f}: the cheapest network in "
                       f"this space needs {bounds.min_macs:,} MACs")


def _check_same_search(attrs: dict[str, Any], options: SearchOptions,
                       evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse to continue a study (``attrs``: its attributes) on another data set or validation split; the
    evaluation it recorded, if any."""
    if StudyKey.DATASET in attrs and attrs[StudyKey.DATASET] != options.dataset:
        raise BadInput(f"study {options.study_name!r} was created for dataset {attrs[StudyKey.DATASET]!r}, "
                       f"not {options.dataset!r}")
    recorded = attrs.get(StudyKey.EVALUATION)
    if recorded is not None and recorded.get("split_seed") != evaluation["split_seed"]:
        raise BadInput(f"study {options.study_name!r} was searched with --seed {recorded.get('split_seed')} (its "
                       f"validation split); continuing it with --seed {options.seed} would score trials on "
                       "another split: use the same --seed or another --study")
    return recorded


def _record_search(study: Any, attrs: dict[str, Any], options: SearchOptions, spec: SearchSpec, bounds: Any,
                   genome: Any) -> Any:
    """The study's reference point; a new study also records its data set, space and objectives, and is seeded."""
    from igcnas.nas.pareto import ReferencePoint
    from igcnas.nas.gene_suggestions import seed_trial_params

    if StudyKey.REFERENCE_POINT in attrs:
        return ReferencePoint.from_dict(attrs[StudyKey.REFERENCE_POINT])
    budget = options.budget
    reference = ReferencePoint(params=float(bounds.max_params), macs=float(bounds.max_macs),
                               latency_ms=budget.max_latency_ms * 4 if budget.max_latency_ms else None)
    study.set_user_attr(StudyKey.REFERENCE_POINT, reference.as_dict())
    study.set_user_attr(StudyKey.DATASET, options.dataset)
    study.set_user_attr(StudyKey.SEARCH_SPEC, spec.as_dict())
    study.set_user_attr(StudyKey.OBJECTIVES, [o.name for o in options.objectives])
    if options.seed_balanced and not study.get_trials(deepcopy=False):
        for params in seed_trial_params(genome):
            study.enqueue_trial(params, skip_if_exists=True)
    return reference


def load_latency_table(options: SearchOptions, spec: SearchSpec) -> Any:
    """The --latency-table, checked: measured on this device and runtime (unless forced), covering the space.

    Every part of every network of the space that fits the params/MACs budget must be in the table, so
    that no trial finds a gap after the search has started.
    """
    from igcnas.evaluators.latency_build import space_configs
    from igcnas.evaluators.latency_fit import require_share
    from igcnas.evaluators.latency_table import LatencyTable

    path = options.latency_table
    table = LatencyTable.load(path)
    table.check_here(input_size=spec.input_size, in_channels=spec.in_channels, force=options.force_latency_table,
                     source=f"--latency-table {path}")
    require_share(table.assessment, options.latency_table_min_share, source=f"--latency-table {path}")
    for line in table.quality_lines()[1:]:  # below its goal, built on a busy machine
        log.warning("--latency-table %s: %s", path, line)
    missing: dict[str, str] = {}
    for config in space_configs(spec, fits=options.budget.admits):
        missing.update((k.key, k.label) for k in table.missing(config))
    if missing:
        raise BadInput(f"--latency-table {path} lacks {len(missing)} part(s) of this search space (e.g. "
                       f"{next(iter(missing.values()))}); extend it with igc-nas latency-table --out {path} and "
                       "this search's space flags (--family, --width, --blocks, --max-l, --structured)")
    return table


def record_latency_source(study: Any, options: SearchOptions, table: Any) -> None:
    """Record on the study which device and runtime its latency figures belong to (once; never mixed)."""
    from dataclasses import asdict

    from igcnas.models.onnx_export import cpu_name

    if table is not None:
        record = {"source": "predicted", "table": str(Path(options.latency_table).resolve()),
                  "fingerprint": asdict(table.fingerprint), "describe": table.fingerprint.describe(),
                  "calibration": table.calibration.as_dict(), "assessment": table.assessment.as_dict()}
    else:
        import torch

        record = {"source": "measured", "describe": f"torch {torch.__version__} eager, untrained network before "
                  f"training, batch 1, {cpu_name()}"}
    earlier = study.user_attrs.get(StudyKey.LATENCY)
    if earlier is not None and earlier.get("fingerprint") != record.get("fingerprint"):
        if not options.force_latency_table:
            raise BadInput(f"study {options.study_name!r} holds latency figures of {earlier.get('describe')}; "
                           f"continuing it with {record['describe']} would mix devices or runtimes: use the "
                           "same --latency-table, another --study, or --force-latency-table")
        log.warning("study latency figures now mix %s and %s (forced)", earlier.get("describe"), record["describe"])
    if earlier != record:
        study.set_user_attr(StudyKey.LATENCY, record)


def run_search(options: SearchOptions, *, callbacks: list[TrialCallback] | None = None,
               on_ready: Callable[[PreparedSearch], None] | None = None,
               evaluate: Callable[..., Any] | None = None) -> SearchOutcome:
    """Run (or continue) the search and write the trial table, front and summary into the run folder.

    ``on_ready`` is called once the input has been validated and the study opened; ``callbacks`` once
    per finished trial of this run; ``evaluate`` trains a trial (see :func:`prepare`). A KeyboardInterrupt
    writes the tables, then propagates.
    """
    backend = get_backend(options.backend)
    check_backend_options(options, backend)
    prep = prepare(options, evaluate=evaluate)
    if on_ready is not None:
        on_ready(prep)
    try:
        report = backend.run(prep, callbacks=list(callbacks or []))
    except KeyboardInterrupt:
        log.warning("interrupted: the running trial is recorded as failed; run the same command to go on")
        finish(prep, BackendReport())
        raise
    outcome = finish(prep, report)
    if report.trained == 0 and report.stopped_early == 0 and report.failed and not report.skipped:
        raise SearchFailed(f"{report.failed} trials failed and none completed; last reason: {report.last_failure}")
    return outcome


def finish(prep: PreparedSearch, report: BackendReport) -> SearchOutcome:
    """Write trials.csv, pareto.csv and summary.json (each atomically) and return the outcome."""
    from igcnas.nas.pareto import export_trials, hypervolume, pareto_front, trials_frame

    options = prep.options
    df = trials_frame(prep.study)
    front = pareto_front(df, with_latency=options.latency_objective)
    run_dir = options.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    files = {"trials": export_trials(df, run_dir / "trials.csv"),
             "pareto": export_trials(front, run_dir / "pareto.csv")}
    hv = hypervolume(df, prep.reference, with_latency=options.latency_objective)
    summary = {
        "study": options.study_name,
        "storage": options.storage_url,
        "dataset": options.dataset,
        "trials": int(len(df)),
        "completed": int((df["state"] == "COMPLETE").sum()),
        "stopped_early": int((df["status"] == TrialStatus.STOPPED_EARLY).sum()),
        "pareto_size": int(len(front)),
        "hypervolume": hv,
        "reference_point": prep.reference.as_dict(),
        "evaluation": options.evaluation_record(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    files["summary"] = run_dir / "summary.json"
    atomic_write_text(files["summary"], json.dumps(summary, indent=2))
    return SearchOutcome(prep.study, run_dir, options.storage_url, report, files, front, hv)
