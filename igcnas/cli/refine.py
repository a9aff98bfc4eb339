"""``igc-nas refine``: the search's finalists trained again for longer, with several seeds, beside the search."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from igcnas.cli._common import fmt_count, print_table
from igcnas.errors import BadInput
from igcnas.evaluators.settings import DEVICE_CHOICES

__all__ = ["register", "cmd_refine"]


def _search_default(name: str) -> Any:
    """A default shared with ``igc-nas search`` (declared once, on SearchOptions)."""
    from igcnas.nas.options import SearchOptions

    return next(f.default for f in dataclasses.fields(SearchOptions) if f.name == name)


def register(sub: Any) -> None:
    from igcnas.nas.options import BACKENDS
    from igcnas.nas.refine import DEFAULT_EPOCHS, DEFAULT_SEEDS, DEFAULT_TOP

    p = sub.add_parser(
        "refine", help="retrain a study's finalists for longer, with several seeds",
        description="Take the study's finalists (its feasible Pareto front within the budget, the --top most "
                    "accurate by the search's accuracy), train each again from scratch for --epochs with every "
                    "seed in --seeds on the search's own data split and training settings, and record the "
                    "results on the study beside the search's figures. trials, pick and the dashboard then use "
                    "the highest fidelity a trial has and say which. Start it on several machines against the "
                    "same storage to share the work (like search workers), or run it on a Ray cluster with "
                    "--backend ray; run it again to resume: finished units are skipped.")
    p.add_argument("--storage", required=True, help="the study's storage (database URL, journal:///PATH or "
                   "grpc://HOST:PORT)")
    p.add_argument("--study", help="study name (default: the storage's only study)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP,
                   help=f"finalists: the most accurate front trials within the budget (default {DEFAULT_TOP})")
    p.add_argument("--max-params", help="only finalists within this parameter budget (250k, 1.5M)")
    p.add_argument("--max-macs", help="only finalists within this MAC budget (FLOPs = 2*MACs)")
    p.add_argument("--max-latency-ms", help="only finalists whose recorded latency is within this (ms)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"epochs of each retraining (default {DEFAULT_EPOCHS}; cosine schedule over them)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="training seeds, comma-separated (default %(default)s): the refined accuracy is their mean")
    p.add_argument("--backend", default="optuna", help=f"where it trains: {', '.join(BACKENDS)} (default optuna: "
                   "in this process)")
    p.add_argument("--device", default="auto", help=f"training device: {DEVICE_CHOICES} (default auto)")
    p.add_argument("--data-dir", help="data folder, when it moved since the search (default: the search's)")
    p.add_argument("--address", help="Ray cluster address (auto or HOST:PORT; --backend ray; default: a local Ray)")
    p.add_argument("--cpus-per-trial", type=float, default=float(_search_default("cpus_per_trial")),
                   help="CPUs per Ray task (default %(default)g)")
    p.add_argument("--gpus-per-trial", type=float, default=float(_search_default("gpus_per_trial")),
                   help="GPUs per Ray task, fractions allowed (default %(default)g)")
    p.add_argument("--heartbeat-interval", type=float, default=float(_search_default("heartbeat_interval")),
                   help="seconds between renewals of a worker's claims (default %(default)g)")
    p.add_argument("--grace-period", type=float, default=float(_search_default("grace_period")),
                   help="seconds without renewal after which a claim is taken over (default %(default)g)")
    p.add_argument("--dry-run", action="store_true", help="show the finalists and what is left to train; train "
                   "nothing")
    p.set_defaults(func=cmd_refine)


def cmd_refine(args: argparse.Namespace) -> int:
    from igcnas.nas.backends import get_backend
    from igcnas.nas.budget import Budget, parse_count
    from igcnas.nas.refine import Claims, pending_units, parse_seeds, plan_job
    from igcnas.nas.study import open_existing_study

    seeds = parse_seeds(args.seeds)
    budget = Budget(max_params=parse_count(args.max_params, "--max-params"),
                    max_macs=parse_count(args.max_macs, "--max-macs"),
                    max_latency_ms=parse_count(args.max_latency_ms, "--max-latency-ms"))
    backend = get_backend(args.backend)
    if args.backend != "ray" and (args.address or args.gpus_per_trial):
        raise BadInput("--address and --gpus-per-trial need --backend ray")
    if args.backend == "optuna" and not args.dry_run:
        from igcnas.evaluators.device import resolve_device

        resolve_device(args.device)  # before any storage is touched
    _, study = open_existing_study(args.storage, args.study)
    job, chosen = plan_job(study, budget=budget, top=args.top, epochs=args.epochs, seeds=seeds,
                           device=args.device, data_dir=args.data_dir, heartbeat_interval=args.heartbeat_interval,
                           grace_period=args.grace_period, progress=sys.stderr.isatty(), address=args.address,
                           cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial)
    search_epochs = job.record.get("epochs")
    print(f"{len(chosen)} finalist(s) of study {study.study_name!r} (searched at {search_epochs} epochs): "
          f"{args.epochs} epochs x seeds {','.join(map(str, seeds))}")
    print_table([{"number": int(r.number), "acc": f"{r.search_val_accuracy:.4f}", "params": fmt_count(r.params),
                  "macs": fmt_count(r.macs), "structure": r.structure} for r in chosen.itertuples()],
                [("number", "trial"), ("acc", "search acc"), ("params", "params"), ("macs", "MACs"),
                 ("structure", "architecture")])
    todo, done, elsewhere = pending_units(job, Claims(study, interval=job.heartbeat_interval,
                                                      grace=job.grace_period))
    print(f"{len(job.units)} units: {done} done, {elsewhere} under way elsewhere, {len(todo)} to train", flush=True)
    if args.dry_run or not todo:
        _summary(study, chosen)
        return 0

    def on_result(unit: Any, result: dict[str, Any]) -> None:
        acc = result.get("val_accuracy")
        outcome = f"val acc {acc:.4f}" if acc is not None else f"failed: {result.get('error')}"
        print(f"trial {unit.trial} seed {unit.seed}: {outcome} after {unit.epochs} epochs "
              f"({result.get('seconds', 0):.1f} s, {result.get('host')})", flush=True)

    report = backend.refine(job, on_result=on_result)
    print(f"refine: {report.trained} trained, {report.failed} failed, {report.already_done} done before, "
          f"{report.elsewhere} under way elsewhere" + (f"; last failure: {report.last_failure}"
                                                       if report.last_failure else ""))
    refined = _summary(study, chosen)
    trained_any = any((r := refined.get(int(n))) is not None and r.accuracies for n in chosen["number"])
    return 1 if report.failed and not trained_any else 0


def _summary(study: Any, chosen: Any) -> dict[int, Any]:
    """Each finalist's search figure beside its refined one (highest fidelity so far)."""
    from igcnas.nas.refine import refined_results

    refined = refined_results(study.user_attrs)
    rows = []
    for r in chosen.itertuples():
        got = refined.get(int(r.number))
        rows.append({"number": int(r.number), "search": f"{r.search_val_accuracy:.4f}",
                     "refined": "-" if got is None or not got.accuracies else f"{got.mean:.4f}",
                     "how": "-" if got is None else got.words()})
    print_table(rows, [("number", "trial"), ("search", "search acc"), ("refined", "refined acc"),
                       ("how", "refined at")])
    return refined
