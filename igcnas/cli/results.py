"""``igc-nas trials``, ``igc-nas dashboard`` and ``igc-nas pick``: reading a study, showing it, exporting from it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from igcnas.cli._common import fmt_count, print_table
from igcnas.cli.search import print_front
from igcnas.errors import BadInput
from igcnas.evaluators.settings import DEVICE_CHOICES

STORAGE_HELP = "the study's storage (database URL, journal:///PATH or grpc://HOST:PORT)"
ONNX_CHOICES = {"auto": None, "on": True, "off": False}  # --onnx -> export_model(onnx=...)

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("trials", help="list the trials of a study", description="List a study's trials, or its "
                       "Pareto front, and optionally export them to CSV.")
    p.add_argument("--storage", required=True, help="the study's storage (database URL, journal:///PATH or "
                   "grpc://HOST:PORT), e.g. sqlite:///igc-nas-runs/x/study.db")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--pareto", action="store_true", help="only the feasible non-dominated trials")
    p.add_argument("--csv", help="also write the table to this CSV (or .parquet) file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_trials)

    p = sub.add_parser("dashboard", help="browse a study's Pareto front in the browser",
                       description="Serve a live dashboard of a study (it refreshes while a search is running), "
                                   "or write it as one self-contained HTML file with --html.")
    p.add_argument("--storage", required=True, help=STORAGE_HELP)
    p.add_argument("--study", help="study name (default: the storage's only study)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 picks a free one)")
    p.add_argument("--refresh", type=float, default=5.0, help="seconds between refreshes of the live page")
    p.add_argument("--html", help="write a static report to this file instead of serving")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("pick", help="pick the most accurate model within a budget and export it",
                       description="Choose the most accurate feasible trial on the Pareto front within the "
                                   "budget (human units: 250k, 1.5M), optionally retrain it with the search's "
                                   "settings, and export config.json, model.pt (state dict), model.pt2 (exported "
                                   "program), model.onnx (checked against PyTorch in ONNX Runtime; needs the "
                                   "[onnx] extra) and report.md with its accuracy on the search's validation split "
                                   "and on the untouched test split. Load it with igcnas.models.load(DIR).")
    p.add_argument("--storage", required=True, help=STORAGE_HELP)
    p.add_argument("--study", help="study name (default: the storage's only study)")
    p.add_argument("--max-params", help="parameter budget")
    p.add_argument("--max-macs", help="MAC budget (multiply-accumulates; FLOPs = 2*MACs)")
    p.add_argument("--max-latency-ms", help="latency budget in ms: predicted by --latency-table for its device and "
                   "runtime, else the latency the search recorded")
    p.add_argument("--latency-table", metavar="PATH", help="pick by this latency table's device and runtime "
                   "(igc-nas latency-table on the target machine); the pick is timed again there")
    p.add_argument("--force-latency-table", action="store_true",
                   help="use a --latency-table measured on another device or runtime")
    p.add_argument("--latency-table-min-share", type=float, metavar="SHARE",
                   help="refuse a --latency-table whose own held-out share within +-10%% is below this (0-1)")
    p.add_argument("--retrain", action="store_true",
                   help="retrain the pick from scratch with the search's training settings before export")
    p.add_argument("--retrain-epochs", type=int, help="retrain for E epochs instead (implies --retrain)")
    p.add_argument("--export", help="directory to write the model to (must not exist or be empty)")
    p.add_argument("--artifacts", help="artifact folder holding the trials' weights (default: from the study)")
    p.add_argument("--data-dir", help="data folder, when it moved since the search (default: the search's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the retraining (the data split is the search's)")
    p.add_argument("--device", default="auto", help=f"where --retrain trains: {DEVICE_CHOICES} (default auto)")
    p.add_argument("--onnx", choices=ONNX_CHOICES, default="auto",
                   help="also write model.onnx and check it against PyTorch with ONNX Runtime: auto (default) when "
                        "onnx and onnxruntime are installed, on (an error when they are not), off")
    p.set_defaults(func=cmd_pick)


def cmd_trials(args: argparse.Namespace) -> int:
    from igcnas.nas.pareto import export_trials, pareto_front, trials_frame
    from igcnas.nas.study import open_existing_study

    _, study = open_existing_study(args.storage, args.study)
    df = trials_frame(study)
    table = pareto_front(df) if args.pareto else df
    if args.csv:
        export_trials(table, args.csv)
        print(f"wrote {len(table)} trials to {args.csv}", file=sys.stderr)
    if args.json:
        print(table.to_json(orient="records", date_format="iso"))
        return 0
    if args.pareto:
        print_front(table, limit=len(table))
        return 0
    refined = bool((table["refined_seeds"] > 0).any()) if len(table) else False
    rows = [{"number": r["number"], "state": r["state"],
             "acc": "-" if r["val_accuracy"] != r["val_accuracy"] else f"{r['val_accuracy']:.4f}",
             "search": "-" if r["search_val_accuracy"] != r["search_val_accuracy"] else
             f"{r['search_val_accuracy']:.4f}", "fidelity": r["fidelity"] if isinstance(r["fidelity"], str) else "-",
             "params": fmt_count(r["params"]), "macs": fmt_count(r["macs"]), "structure": r["structure"]}
            for _, r in table.iterrows()]
    # With refined trials, val acc is each trial's highest fidelity: the search's figure and which one stand beside.
    extra = [("search", "search acc"), ("fidelity", "val acc measured at")] if refined else []
    print_table(rows, [("number", "trial"), ("state", "state"), ("acc", "val acc"), *extra, ("params", "params"),
                       ("macs", "MACs"), ("structure", "architecture")])
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from igcnas.dashboards import serve, write_report
    from igcnas.nas.study import open_existing_study

    _, study = open_existing_study(args.storage, args.study)
    if args.html:
        path = write_report(study, args.html)
        print(f"wrote {path} (self-contained; opens offline)")
        return 0
    name = study.study_name
    # One study object for the server's life: Optuna's cache then reads only new or running trials on
    # each refresh instead of the whole study.
    server = serve(lambda: study, title=f"study {name}", host=args.host, port=args.port, refresh_s=args.refresh)
    server.warm()  # read the study and build the page data before the first browser asks
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: anyone who can reach this machine on port {server.port} can "
              "read the study", file=sys.stderr)
    print(f"dashboard for study {name!r}: {server.url} (refreshes every {args.refresh:g}s; Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def _latency_table(args: argparse.Namespace, study: Any) -> Any:
    """The --latency-table, checked against this machine for the study's image shape."""
    from igcnas.evaluators.latency_table import LatencyTable
    from igcnas.evaluators.latency_fit import require_share
    from igcnas.nas.records import StudyKey

    table = LatencyTable.load(args.latency_table)
    spec = study.user_attrs.get(StudyKey.SEARCH_SPEC) or {}
    fp = table.fingerprint
    table.check_here(input_size=int(spec.get("input_size", fp.input_size)),
                     in_channels=int(spec.get("in_channels", fp.in_channels)), force=args.force_latency_table,
                     source=f"--latency-table {args.latency_table}")
    require_share(table.assessment, args.latency_table_min_share, source=f"--latency-table {args.latency_table}")
    return table


def cmd_pick(args: argparse.Namespace) -> int:
    from igcnas.nas.pareto import pareto_front, trials_frame
    from igcnas.nas.pick import NothingFits, accuracy_words, choose, export_model, with_predicted_latency
    from igcnas.nas.study import open_existing_study

    budget = _pick_budget(args)
    _, study = open_existing_study(args.storage, args.study)
    df = trials_frame(study)
    table = _latency_table(args, study) if args.latency_table else None
    if table is not None:
        df = with_predicted_latency(df, table)
    try:
        row = choose(df, budget)
    except NothingFits as exc:
        if budget.max_latency_ms is not None and df["latency_ms"].isna().all():
            raise BadInput("no trial of this study has a latency; give --latency-table, or search with "
                           "--max-latency-ms or --latency-objective to pick by latency") from None
        raise BadInput(str(exc)) from None
    print(f"picked trial {int(row['number'])}: val acc {row['val_accuracy']:.4f} ({accuracy_words(row)}), "
          f"params {int(row['params']):,}, MACs {int(row['macs']):,} (FLOPs = 2*MACs = {2 * int(row['macs']):,}) "
          f"- {row['structure']}")
    notes = _latency_notes(row, table) if table is not None else []
    if not args.export:
        return 0
    front = pareto_front(df, with_latency=budget.max_latency_ms is not None)  # the front the pick was taken on
    result = export_model(study=study, trial_row=row, directory=args.export, front=front, budget=budget,
                          artifacts_dir=args.artifacts, retrain=args.retrain, retrain_epochs=args.retrain_epochs,
                          data_dir=args.data_dir, seed=args.seed, device=args.device,
                          onnx=ONNX_CHOICES[args.onnx], report_notes=tuple(notes))
    _print_export(result, row)
    return 0


def _pick_budget(args: argparse.Namespace) -> Any:
    """The budget of ``igc-nas pick``, after refusing flags that do not go together (before the study is read)."""
    from igcnas.evaluators.latency_fit import check_min_share
    from igcnas.nas.budget import Budget, parse_count

    budget = Budget(max_params=parse_count(args.max_params, "--max-params"),
                    max_macs=parse_count(args.max_macs, "--max-macs"),
                    max_latency_ms=parse_count(args.max_latency_ms, "--max-latency-ms"))
    if args.force_latency_table and not args.latency_table:
        raise BadInput("--force-latency-table needs --latency-table PATH")
    check_min_share(args.latency_table_min_share, has_table=bool(args.latency_table))
    if args.retrain_epochs is not None and args.retrain_epochs < 1:
        raise BadInput(f"--retrain-epochs must be >= 1, got {args.retrain_epochs}")
    if args.retrain or args.retrain_epochs is not None:
        from igcnas.evaluators.device import resolve_device

        resolve_device(args.device)
    return budget


def _latency_notes(row: Any, table: Any) -> list[str]:
    """The pick timed again on the latency table's runtime, and the table's quality, printed (report lines)."""
    from igcnas.nas.pick import latency_check
    from igcnas.search_space.config_io import config_from_dict

    _, notes = latency_check(config_from_dict(json.loads(row["config"])), table, float(row["latency_ms"]))
    notes += [f"- the latency table's {line}" for line in table.quality_lines()]
    for note in notes:
        print(note.removeprefix("- "))
    return notes


def _print_export(result: Any, row: Any) -> None:
    """Where the export went and how it scored (and, with model.onnx, how it matched PyTorch)."""
    from igcnas.nas.pick import weights_note

    test = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(f"exported to {result.directory}: val acc {result.val_accuracy:.4f} (the search's validation split, "
          f"{len(result.val_index)} images), test acc {test}{weights_note(row, result.retrained_epochs)}")
    for label, path in result.files.items():
        print(f"  {label}: {path}")
    check = result.onnx_check
    if check is not None:
        print(f"ONNX Runtime {check.ort_version}: max |difference| of logits {check.max_abs_diff:.2e}, top-1 "
              f"agreement {check.top1_agreement:.4f} on {check.batch} validation images"
              + ("" if check.passed else " - DOES NOT MATCH PyTorch (see report.md)"))
