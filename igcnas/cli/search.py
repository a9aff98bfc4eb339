"""``igc-nas search`` (its flags generated from ``SearchOptions``) and ``igc-nas rank-check``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from igcnas.cli._common import fmt_count, print_table
from igcnas.evaluators.settings import DEVICE_CHOICES
from igcnas.nas.objectives import ACCURACY, MACS, PARAMS
from igcnas.nas.options import SearchOptions, cli_fields

__all__ = ["register", "options_from_args", "trial_line", "print_front"]

GROUP_TITLES = {"budget": "budget (human units: 250k, 1.5M, 30M)"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "search", help="multi-objective search (accuracy, params, MACs) over valid IGC networks",
        description="Search the IGC design space for networks on the Pareto front of validation accuracy, "
                    "params and MACs (FLOPs = 2*MACs). Every trial's architecture is decoded from a fixed set "
                    "of genes that always meets the complementary condition; one over a budget is never "
                    "trained. Results go to an Optuna study (SQLite in OUTPUT_DIR/STUDY/study.db unless "
                    "--storage); running again continues the study. OUTPUT_DIR/STUDY also gets trials.csv, "
                    "pareto.csv, summary.json and dashboard.html.")
    groups: dict[str, Any] = {}
    for name, default, spec in cli_fields():
        group = groups.get(spec.group) or groups.setdefault(
            spec.group, p.add_argument_group(GROUP_TITLES.get(spec.group, spec.group)))
        flag = spec.flag_for(name)
        kwargs: dict[str, Any] = {"dest": name, "help": spec.help}
        if spec.kind in ("store_true", "store_false"):
            kwargs.update(action=spec.kind, default=default)
        else:
            kwargs.update(default=None, type=spec.type,  # None = not given: the dataclass default applies
                          metavar=spec.metavar or flag.lstrip("-").replace("-", "_").upper())
            if spec.kind == "append":
                kwargs["action"] = "append"
            elif spec.kind == "nargs+":
                kwargs["nargs"] = "+"
        group.add_argument(flag, **kwargs)
    groups["storage and output"].add_argument("--no-dashboard", action="store_true",
                                              help="do not write dashboard.html into the run folder")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("rank-check", help="does short training rank networks as long training does? (Kendall tau)",
                       description="Train about 10 sampled configurations at the search fidelity and at a longer "
                                   "one and print Kendall's tau between the two rankings by validation accuracy.")
    p.add_argument("--dataset", default="digits", help="data set, as for search (default digits)")
    p.add_argument("--data-dir", help="folder with the data set's files, as for search")
    p.add_argument("--family", action="append", help="restrict to a family (repeatable)")
    p.add_argument("--n-configs", type=int, default=10, help="configurations to train at both fidelities (10)")
    p.add_argument("--short-epochs", type=int, default=SearchOptions().epochs,
                   help=f"the search fidelity (default {SearchOptions().epochs}, as igc-nas search)")
    p.add_argument("--long-epochs", type=int, default=16, help="the longer fidelity (default 16)")
    p.add_argument("--max-batches-per-epoch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, split and training (default 0)")
    p.add_argument("--device", default="auto", help=f"where to train: {DEVICE_CHOICES} (default auto)")
    p.set_defaults(func=cmd_rank_check)


def options_from_args(args: argparse.Namespace) -> SearchOptions:
    """The options the flags give; flags not given keep the dataclass defaults (declared once)."""
    values: dict[str, Any] = {}
    for name, _default, spec in cli_fields():
        raw = getattr(args, name)
        if spec.kind in ("store_true", "store_false"):
            values[name] = raw
        elif raw is not None:
            values[name] = spec.parse(raw, spec.flag_for(name)) if spec.parse else raw
    return SearchOptions(**values)


def trial_line(study: Any, trial: Any) -> None:
    """One line per finished trial on stderr (progress of a long search)."""
    from igcnas.nas.records import TrialKey, TrialStatus, record_of

    attrs = record_of(trial.user_attrs)
    status = attrs.get(TrialKey.STATUS)
    if trial.state.name == "COMPLETE" and trial.values:
        acc, params, macs = trial.values[:3]
        text = f"val acc {acc:.4f}  params {fmt_count(params)}  MACs {fmt_count(macs)}"
    elif status == TrialStatus.STOPPED_EARLY:
        accuracy = (attrs.get(TrialKey.CURVE) or [0])[-1]
        text = f"stopped early at epoch {attrs.get(TrialKey.STOPPED_AT_EPOCH)}: val acc {accuracy:.4f}, dominated"
    elif status == TrialStatus.OVER_BUDGET:
        text = "not trained: over budget"
    elif status == TrialStatus.NO_SLOT:
        text = "not trained: the study's --total-trials are taken"
    else:
        text = f"{trial.state.name.lower()}: {attrs.get(TrialKey.FAIL_REASON, '')}"
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    print(f"trial {trial.number:>4}  {text}  ({seconds:.1f}s)  {attrs.get(TrialKey.STRUCTURE, '?')}",
          file=sys.stderr, flush=True)


def print_front(front: Any, limit: int = 30) -> None:
    rows = [{"number": r["number"], "acc": f"{r[ACCURACY.name]:.4f}", "params": fmt_count(r[PARAMS.name]),
             "macs": fmt_count(r[MACS.name]), "flops": fmt_count(2 * r[MACS.name]), "structure": r["structure"]}
            for _, r in front.head(limit).iterrows()]
    print_table(rows, [("number", "trial"), ("acc", "val acc"), ("params", "params"), ("macs", "MACs"),
                       ("flops", "FLOPs=2*MACs"), ("structure", "architecture (family, blocks, C:L K per stage)")])
    if len(front) > limit:
        print(f"... {len(front) - limit} more on the front")


def _rungs_text(options: SearchOptions) -> str:
    schedule = options.rung_schedule
    if schedule is None:
        return "off"
    if not schedule.rungs:
        return f"on, but no rung below {options.epochs} epochs"
    return "at epochs " + ", ".join(map(str, schedule.rungs))


def cmd_search(args: argparse.Namespace) -> int:
    from igcnas.nas.orchestrator import run_search

    options = options_from_args(args)

    def ready(prep: Any) -> None:
        import optuna

        queued = sum(1 for t in prep.study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING)
        seeds = f", {queued} seeds queued" if queued else ""
        target = (f"up to {options.total_trials} trained trials in the study" if options.total_trials
                  else f"{options.n_trials} trials")
        print(f"igc-nas search: study {options.study_name!r} ({len(prep.earlier)} earlier trials{seeds}) in "
              f"{options.storage_url}; {options.backend} backend, {options.sampler} sampler, {target} of "
              f"{options.epochs} epochs on {options.dataset}; early stopping {_rungs_text(options)}",
              file=sys.stderr, flush=True)
        if prep.latency_table is not None:
            print(f"latency table {options.latency_table} ({prep.latency_table.fingerprint.describe()}): "
                  f"{prep.latency_table.quality_lines()[0]}", file=sys.stderr, flush=True)

    outcome = run_search(options, callbacks=[trial_line], on_ready=ready)
    report = outcome.report
    if not args.no_dashboard:
        from igcnas.dashboards import write_report

        outcome.files["dashboard"] = write_report(outcome.study, outcome.run_dir / "dashboard.html")
    print(f"Pareto front of study {options.study_name!r} (feasible, non-dominated; {len(outcome.front)} of "
          f"{len(outcome.study.trials)} trials; this run trained {report.trained} to the end and stopped "
          f"{report.stopped_early} early):")
    print_front(outcome.front)
    print(f"hypervolume (normalised objectives, reference point 1,1,1): {outcome.hypervolume:.4f}")
    print(f"storage: {outcome.storage_url}")
    for label, path in outcome.files.items():
        print(f"{label}: {path}")
    return 0


def cmd_rank_check(args: argparse.Namespace) -> int:
    from igcnas.evaluators.device import resolve_device
    from igcnas.nas.rank_check import rank_check

    resolve_device(args.device)  # an unavailable device is bad input, before any training

    def row(r: dict[str, Any]) -> None:
        print(f"  {r['short']:.4f} -> {r['long']:.4f}  params {fmt_count(r['params']):>9}  {r['structure']}",
              flush=True)

    print(f"training {args.n_configs} configurations for {args.short_epochs} and {args.long_epochs} epochs on "
          f"{args.dataset} (val acc short -> long):")
    result = rank_check(dataset=args.dataset, data_dir=args.data_dir, n_configs=args.n_configs,
                        short_epochs=args.short_epochs, long_epochs=args.long_epochs, seed=args.seed,
                        families=tuple(args.family) if args.family else None,
                        max_batches_per_epoch=args.max_batches_per_epoch, device=args.device, on_row=row)
    verdict = ("a trustworthy proxy" if result.tau >= 0.6 else "a rough proxy" if result.tau >= 0.3
               else "not a trustworthy proxy: search with more epochs")
    print(f"Kendall tau between the {result.short_epochs}-epoch and {result.long_epochs}-epoch rankings: "
          f"{result.tau:.3f} (p = {result.p_value:.3g}) -> {result.short_epochs} epochs is {verdict}")
    return 0
