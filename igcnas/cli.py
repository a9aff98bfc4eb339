"""``igc-nas`` command line.

Every command returns an exit status: 0 on success, 2 for bad input (with a
one-line ``igc-nas: error: ...`` message naming the problem), never a
traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main"]

log = logging.getLogger("igcnas")


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _fmt_int(value: float | int | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{unit}"
    return f"{value:.0f}"


def _print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    widths = [max(len(title), *(len(str(r.get(key, ""))) for r in rows)) if rows else len(title)
              for key, title in columns]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(row.get(key, "")).ljust(w) for (key, _), w in zip(columns, widths)))


# ---------------------------------------------------------------------------------------- zoo


def _zoo_rows(measure: bool) -> list[dict[str, Any]]:
    from igcnas.search_space.costs import closed_form_costs
    from igcnas.search_space.enumerate import arch_id
    from igcnas.search_space.plan import resolve
    from igcnas.search_space.zoo import ZOO

    rows = []
    entries = list(ZOO.values())
    progress = _progress(entries, "measuring zoo networks with fvcore", enabled=measure)
    for entry in progress:
        costs = closed_form_costs(entry.config)
        row: dict[str, Any] = {
            "name": entry.name,
            "family": entry.config.family,
            "depth": entry.config.depth,
            "arch_id": arch_id(entry.config),
            "params": costs.params,
            "conv_params": costs.conv_params,
            "macs": costs.macs,
            "flops": costs.flops,
            "closed_form_fvcore_total": costs.fvcore_total,
        }
        if measure:
            from igcnas.evaluators.cost import measure_config

            measured = measure_config(entry.config)
            row["fvcore_total"] = measured.fvcore_total
            row["fvcore_by_operator"] = measured.by_operator
            row["fvcore_uncounted"] = measured.uncounted
            row["closed_form_equals_fvcore"] = (
                measured.by_operator == costs.by_operator and measured.params == costs.params
            )
        paper = []
        for fig in entry.paper:
            item: dict[str, Any] = {"table": fig.table, "scope": fig.scope, "tolerance": fig.tolerance}
            if fig.scope == "block":
                block = resolve(entry.config).blocks()[1]
                ours_params = sum(c.params for c in block.convs)
                ours_macs = sum(c.macs for c in block.convs)
            else:
                ours_params = row[fig.params_field]
                ours_macs = costs.macs
            if fig.params is not None:
                item.update(paper_params=fig.params, params_ratio=round(ours_params / fig.params, 4))
            if fig.macs is not None:
                item.update(paper_macs=fig.macs, macs_ratio=round(ours_macs / fig.macs, 4))
            paper.append(item)
        row["paper"] = paper
        rows.append(row)
    return rows


def _progress(items: list[Any], desc: str, *, enabled: bool = True) -> Any:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return items
    return tqdm(items, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty())


def cmd_zoo(args: argparse.Namespace) -> int:
    rows = _zoo_rows(measure=not args.closed_form)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = []
    for row in rows:
        ratios = []
        for p in row["paper"]:
            parts = []
            if "params_ratio" in p:
                parts.append(f"params x{p['params_ratio']:.3f}")
            if "macs_ratio" in p:
                parts.append(f"MACs x{p['macs_ratio']:.3f}")
            ratios.append(f"T{p['table']}{'/block' if p['scope'] == 'block' else ''}: " + ", ".join(parts))
        table.append({
            "name": row["name"],
            "depth": row["depth"],
            "params": _fmt_int(row["params"]),
            "conv_params": _fmt_int(row["conv_params"]),
            "macs": _fmt_int(row["macs"]),
            "flops": _fmt_int(row["flops"]),
            "fvcore": _fmt_int(row.get("fvcore_total", row["closed_form_fvcore_total"])),
            "paper": "; ".join(ratios),
        })
    _print_table(table, [("name", "name"), ("depth", "D"), ("params", "params"), ("conv_params", "conv params"),
                         ("macs", "MACs"), ("flops", "FLOPs=2*MACs"), ("fvcore", "fvcore total"),
                         ("paper", "ours / paper")])
    return 0


# -------------------------------------------------------------------------------------- space


def _stage_report(family: str, stage: Any, index: int) -> dict[str, Any]:
    from igcnas.search_space.conditions import check_balance, check_complementary
    from igcnas.search_space.families import Interleaved, get_family

    structure = get_family(family).structure(stage, index)
    comp = check_complementary(structure, stage.width)
    report: dict[str, Any] = {
        "stage": index,
        "width": stage.width,
        "structure": _structure_text(structure),
        "dense": comp.dense,
        "complementary": comp.complementary,
        "min_paths": comp.min_paths,
        "max_paths": comp.max_paths,
        "condition": comp.describe(),
    }
    if isinstance(structure, Interleaved):
        balance = check_balance(structure, stage.width)
        report.update(
            L=structure.num_convs,
            balance_terms=list(balance.terms),
            balance_imbalance=round(balance.imbalance, 4),
            params_over_bound=round(balance.excess, 4),
        )
        if balance.pointwise_excess is not None:
            report.update(
                pointwise_imbalance=round(balance.pointwise_imbalance or 1.0, 4),
                pointwise_params_over_bound=round(balance.pointwise_excess, 4),
            )
    return report


def _structure_text(structure: Any) -> str:
    from igcnas.search_space.families import Interleaved

    if isinstance(structure, Interleaved):
        return f"K1={structure.k1} chain={list(structure.chain)} (L={structure.num_convs})"
    return f"expansion={structure.expansion} groups={structure.groups}"


def cmd_space(args: argparse.Namespace) -> int:
    if getattr(args, "space_command", None) == "check":
        return cmd_space_check(args)
    from igcnas.search_space.enumerate import DesignSpace, arch_id
    from igcnas.search_space.spec import SearchSpec

    if args.family is None or args.width is None:
        raise UsageError("space needs --family and --width (or: igc-nas space check CONFIG.json)")
    spec = SearchSpec(families=(args.family,), widths=(args.width,), blocks=(args.blocks,),
                      max_l=args.max_l, num_stages=args.stages)
    space = DesignSpace(spec)
    stages = []
    from igcnas.search_space.config import StageConfig

    for i, options in enumerate(space.stage_options(args.family, args.width, args.blocks)):
        width = args.width * 2**i
        stage_rows = []
        for option in options:
            stage = StageConfig(width=width, blocks=1, **option)
            stage_rows.append(_stage_report(args.family, stage, i))
        stages.append({"stage": i, "width": width, "options": stage_rows})
    samples = space.sample(min(args.samples, space.count()), seed=args.seed) if space.count() else []
    result = {
        "family": args.family,
        "width": args.width,
        "count": space.count(),
        "stages": stages,
        "samples": [{"arch_id": arch_id(c), "stages": [_structure_text_of(c, i) for i in range(len(c.stages))]}
                    for c in samples],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"family {args.family}, first-stage width {args.width}: {result['count']} valid networks "
          f"({args.stages} stages, widths x1/x2/x4, L <= {args.max_l})")
    for stage in stages:
        print(f"stage {stage['stage']} (C = {stage['width']}): {len(stage['options'])} options")
        for opt in stage["options"]:
            print(f"  {opt['structure']:<36} {opt['condition']}; params/bound {opt.get('params_over_bound', '-')}")
    if samples:
        print(f"uniform samples (seed {args.seed}):")
        for s in result["samples"]:
            print(f"  {s['arch_id']}  " + " | ".join(s["stages"]))
    return 0


def _structure_text_of(config: Any, index: int) -> str:
    from igcnas.search_space.families import get_family

    return _structure_text(get_family(config.family).structure(config.stages[index], index))


def cmd_space_check(args: argparse.Namespace) -> int:
    from igcnas.search_space.config import config_to_dict, load_config
    from igcnas.search_space.costs import closed_form_costs
    from igcnas.search_space.enumerate import arch_id

    config = load_config(args.config)
    costs = closed_form_costs(config)  # also resolves every shape, raising on misfits
    stages = [_stage_report(config.family, stage, i) for i, stage in enumerate(config.stages)]
    result = {"config": config_to_dict(config), "arch_id": arch_id(config), "costs": costs.as_dict(),
              "stages": stages, "valid": True}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.config}: valid {config.family} network, arch id {result['arch_id']}")
    print(f"  params {costs.params:,}  conv params {costs.conv_params:,}  MACs {costs.macs:,} "
          f"(FLOPs = 2*MACs = {costs.flops:,})")
    for s in stages:
        print(f"  stage {s['stage']} C={s['width']}: {s['structure']}: {s['condition']}")
    return 0


# -------------------------------------------------------------------------------------- count


def _config_or_zoo(text: str) -> Any:
    from igcnas.search_space.config import load_config
    from igcnas.search_space.zoo import ZOO

    if text in ZOO:
        return ZOO[text].config
    if Path(text).suffix.lower() in (".json", ".toml") or Path(text).exists():
        return load_config(text)
    raise UsageError(f"{text!r} is neither a zoo network (see 'igc-nas zoo') nor a config file")


def cmd_count(args: argparse.Namespace) -> int:
    from igcnas.evaluators.cost import measure_costs, measure_latency
    from igcnas.models import build_model
    from igcnas.search_space.costs import closed_form_costs, uncounted_operations
    from igcnas.search_space.enumerate import arch_id

    config = _config_or_zoo(args.target)
    closed = closed_form_costs(config)
    model = build_model(config, seed=0)
    shape = (config.in_channels, config.input_size, config.input_size)
    measured = measure_costs(model, shape)
    result: dict[str, Any] = {
        "target": args.target,
        "arch_id": arch_id(config),
        "closed_form": closed.as_dict(),
        "fvcore": measured.as_dict(),
        "uncounted_operations": uncounted_operations(config),
        "closed_form_equals_fvcore": closed.by_operator == measured.by_operator and closed.params == measured.params,
        "torch_flop_counter_equals_2x_macs": measured.torch_flops == 2 * measured.macs,
    }
    if args.latency:
        latency = measure_latency(model, shape, batch_sizes=(1, args.batch), repeats=args.repeats)
        result["latency_ms"] = {str(k): round(v, 3) for k, v in latency.ms_by_batch.items()}
        result["latency_threads"] = latency.threads
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.target} ({config.family}, arch id {result['arch_id']})")
    print(f"  params        {closed.params:>14,}  (conv weights {closed.conv_params:,})")
    print(f"  MACs          {closed.macs:>14,}  (FLOPs = 2*MACs = {closed.flops:,})")
    print(f"  fvcore total  {measured.fvcore_total:>14,}  by operator {measured.by_operator}")
    print(f"  not counted by fvcore: {measured.uncounted or 'nothing'}; elementwise ops in the plan: "
          f"{result['uncounted_operations']}")
    print(f"  closed form == fvcore: {result['closed_form_equals_fvcore']}; torch flop counter == 2*MACs: "
          f"{result['torch_flop_counter_equals_2x_macs']}")
    if args.latency:
        lat = ", ".join(f"batch {k}: {v} ms" for k, v in result["latency_ms"].items())
        print(f"  CPU latency (median of {args.repeats}, {result['latency_threads']} threads): {lat}")
    return 0



# ------------------------------------------------------------------------------------- search


def _budget_from_args(args: argparse.Namespace) -> Any:
    from igcnas.nas.space import Budget, parse_count

    return Budget(
        max_params=parse_count(args.max_params, "--max-params"),
        max_macs=parse_count(args.max_macs, "--max-macs"),
        max_latency_ms=parse_count(args.max_latency_ms, "--max-latency-ms"),
    )


def _options_from_args(args: argparse.Namespace) -> Any:
    from igcnas.nas.optuna_driver import SearchOptions

    budget = _budget_from_args(args)
    if args.data_dir is not None and not Path(args.data_dir).expanduser().exists() and not args.download:
        raise UsageError(f"--data-dir {args.data_dir!r} does not exist")
    return SearchOptions(
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        families=tuple(dict.fromkeys(args.family)) if args.family else None,
        widths=tuple(args.width) if args.width else None,
        blocks=tuple(args.blocks),
        max_l=args.max_l,
        n_trials=args.n_trials,
        timeout=args.timeout,
        sampler=args.sampler,
        storage=args.storage,
        study=args.study,
        output_dir=args.output_dir,
        backend=args.backend,
        address=args.address,
        budget=budget,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        n_jobs=args.n_jobs,
        cpus_per_trial=args.cpus_per_trial,
        max_concurrent=args.max_concurrent,
        latency_objective=args.latency_objective,
        max_batches_per_epoch=args.max_batches_per_epoch,
        total_trials=args.total_trials,
        seed_balanced=not args.no_seed_balanced,
        early_stopping=not args.no_early_stopping,
        eta=args.eta,
        min_epochs=args.min_epochs,
        trial_timeout=args.trial_timeout,
        trial_memory_mb=args.trial_memory_mb,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
    )


def _trial_line(study: Any, trial: Any) -> None:
    attrs = trial.user_attrs
    what = attrs.get("structure", "?")
    if trial.state.name == "COMPLETE" and trial.values:
        acc, params, macs = trial.values[:3]
        text = f"val acc {acc:.4f}  params {_fmt_int(params)}  MACs {_fmt_int(macs)}"
    elif trial.state.name == "PRUNED" and attrs.get("status") == "stopped_early":
        rung = attrs.get("stopped_at_epoch")
        text = f"stopped early at epoch {rung}: val acc {(attrs.get('curve') or [0])[-1]:.4f}, dominated at the rung"
    elif trial.state.name == "PRUNED":
        text = "not trained: over budget"
    else:
        text = f"{trial.state.name.lower()}: {attrs.get('fail_reason', '')}"
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    print(f"trial {trial.number:>4}  {text}  ({seconds:.1f}s)  {what}", file=sys.stderr, flush=True)


def _print_front(front: Any, limit: int = 30) -> None:
    rows = []
    for _, r in front.head(limit).iterrows():
        rows.append({
            "number": r["number"],
            "acc": f"{r['val_accuracy']:.4f}",
            "params": _fmt_int(r["params"]),
            "macs": _fmt_int(r["macs"]),
            "flops": _fmt_int(2 * r["macs"]),
            "structure": r["structure"],
        })
    _print_table(rows, [("number", "trial"), ("acc", "val acc"), ("params", "params"), ("macs", "MACs"),
                        ("flops", "FLOPs=2*MACs"), ("structure", "architecture (family, blocks, C:L K per stage)")])
    if len(front) > limit:
        print(f"... {len(front) - limit} more on the front")


def _rungs_text(options: Any) -> str:
    schedule = options.rung_schedule
    if schedule is None:
        return "off"
    if not schedule.rungs:
        return f"on, but no rung below {options.epochs} epochs"
    return "at epochs " + ", ".join(map(str, schedule.rungs))


def cmd_search(args: argparse.Namespace) -> int:
    from igcnas.nas.optuna_driver import run_search

    options = _options_from_args(args)

    def ready(prep: Any) -> None:
        import optuna

        trials = prep.study.get_trials(deepcopy=False)
        queued = sum(1 for t in trials if t.state == optuna.trial.TrialState.WAITING)
        seeds = f", {queued} seeds queued" if queued else ""
        print(f"igc-nas search: study {options.study_name!r} ({len(prep.earlier)} earlier trials{seeds}) in "
              f"{options.storage_url}; "
              f"{options.backend} backend, {options.sampler} sampler, {options.n_trials} trials of "
              f"{options.epochs} epochs on {options.dataset}; early stopping "
              f"{_rungs_text(options)}",
              file=sys.stderr, flush=True)

    outcome = run_search(options, callbacks=[_trial_line], on_ready=ready)
    print(f"Pareto front of study {options.study_name!r} (feasible, non-dominated; "
          f"{len(outcome.front)} of {len(outcome.study.trials)} trials; this run trained "
          f"{outcome.completed_this_run} to the end and stopped {outcome.stopped_early_this_run} early):")
    _print_front(outcome.front)
    print(f"hypervolume (normalised objectives, reference point 1,1,1): {outcome.hypervolume:.4f}")
    print(f"storage: {outcome.storage_url}")
    for label, path in outcome.files.items():
        print(f"{label}: {path}")
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from igcnas.nas.pareto import export_trials, pareto_front, trials_frame

    _, study = _open_existing_study(args.storage, args.study)
    df = trials_frame(study)
    table = pareto_front(df) if args.pareto else df
    if args.csv:
        export_trials(table, args.csv)
        print(f"wrote {len(table)} trials to {args.csv}", file=sys.stderr)
    if args.json:
        print(table.to_json(orient="records", date_format="iso"))
        return 0
    if args.pareto:
        _print_front(table, limit=len(table))
        return 0
    rows = [{"number": r["number"], "state": r["state"],
             "acc": "-" if r["val_accuracy"] != r["val_accuracy"] else f"{r['val_accuracy']:.4f}",
             "params": _fmt_int(r["params"]), "macs": _fmt_int(r["macs"]), "structure": r["structure"]}
            for _, r in table.iterrows()]
    _print_table(rows, [("number", "trial"), ("state", "state"), ("acc", "val acc"), ("params", "params"),
                        ("macs", "MACs"), ("structure", "architecture")])
    return 0


# ---------------------------------------------------------------------------- dashboard / pick


def _open_existing_study(storage_url: str, study_name: str | None) -> Any:
    """Open a study for reading; with no name, the storage's only study."""
    import optuna

    from igcnas.nas.optuna_driver import open_storage, open_study

    storage = open_storage(storage_url, heartbeat=False)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if len(names) != 1:
            raise UsageError(f"--study is required: this storage holds {len(names)} studies"
                             + (f" ({', '.join(names)})" if names else ""))
        study_name = names[0]
    return storage, open_study(storage, study_name, create=False)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from igcnas.dashboards import serve, write_report

    storage, study = _open_existing_study(args.storage, args.study)
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


def cmd_pick(args: argparse.Namespace) -> int:
    from igcnas.nas.pareto import pareto_front, trials_frame
    from igcnas.nas.pick import NothingFits, choose, export_model

    budget = _budget_from_args(args)
    if args.retrain_epochs is not None and args.retrain_epochs < 1:
        raise UsageError(f"--retrain-epochs must be >= 1, got {args.retrain_epochs}")
    _, study = _open_existing_study(args.storage, args.study)
    df = trials_frame(study)
    try:
        row = choose(df, budget)
    except NothingFits as exc:
        if budget.max_latency_ms is not None and df["latency_ms"].isna().all():
            raise UsageError("no trial of this study has a measured latency; search with --max-latency-ms or "
                             "--latency-objective to pick by latency") from None
        print(f"igc-nas: error: {exc}", file=sys.stderr)
        return 2
    front = pareto_front(df)
    print(f"picked trial {int(row['number'])}: val acc {row['val_accuracy']:.4f}, params {int(row['params']):,}, "
          f"MACs {int(row['macs']):,} (FLOPs = 2*MACs = {2 * int(row['macs']):,}) - {row['structure']}")
    if not args.export:
        return 0
    result = export_model(study=study, trial_row=row, directory=args.export, front=front, budget=budget,
                          artifacts_dir=args.artifacts, retrain_epochs=args.retrain_epochs, data_dir=args.data_dir,
                          seed=args.seed)
    test = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(f"exported to {result.directory}: val acc {result.val_accuracy:.4f}, test acc {test}")
    for label, path in result.files.items():
        print(f"  {label}: {path}")
    return 0

def cmd_proxy_check(args: argparse.Namespace) -> int:
    from igcnas.nas.proxy import proxy_check

    def row(r: dict[str, Any]) -> None:
        print(f"  {r['short']:.4f} -> {r['long']:.4f}  params {_fmt_int(r['params']):>9}  {r['structure']}",
              flush=True)

    print(f"training {args.n_configs} configurations for {args.short_epochs} and {args.long_epochs} epochs on "
          f"{args.dataset} (val acc short -> long):")
    result = proxy_check(dataset=args.dataset, data_dir=args.data_dir, n_configs=args.n_configs,
                         short_epochs=args.short_epochs, long_epochs=args.long_epochs, seed=args.seed,
                         families=tuple(args.family) if args.family else None,
                         max_batches_per_epoch=args.max_batches_per_epoch, on_row=row)
    verdict = ("a trustworthy proxy" if result.tau >= 0.6 else "a rough proxy" if result.tau >= 0.3
               else "not a trustworthy proxy: search with more epochs")
    print(f"Kendall tau between the {result.short_epochs}-epoch and {result.long_epochs}-epoch rankings: "
          f"{result.tau:.3f} (p = {result.p_value:.3g}) -> {result.short_epochs} epochs is {verdict}")
    return 0


# --------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="igc-nas",
        description="Multi-objective architecture search over interleaved group convolution (IGC) networks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("zoo", help="list the paper's reference networks with exact params and MACs",
                       description="Every zoo network with params, conv params, MACs (FLOPs = 2*MACs), the "
                                   "fvcore total, and the ratio to the figures printed in the paper.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--closed-form", action="store_true",
                   help="skip building the networks (no fvcore measurement; much faster)")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("space", help="enumerate the valid design space for a family and width",
                       description="List every stage option the complementary condition allows for FAMILY at "
                                   "first-stage width W (stages x1, x2, x4), with balance figures, the number "
                                   "of valid networks and uniform samples. 'space check CONFIG' validates a file.")
    p.add_argument("--family", help="block family (see 'igc-nas zoo' or the README)")
    p.add_argument("--width", type=int, help="first-stage width (channels)")
    p.add_argument("--blocks", type=int, default=2, help="blocks per stage (default 2)")
    p.add_argument("--stages", type=int, default=3, help="number of stages (default 3)")
    p.add_argument("--max-l", type=int, default=4, help="largest L, group convolutions per block (default 4)")
    p.add_argument("--samples", type=int, default=5, help="uniform samples to show (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_space)
    space_sub = p.add_subparsers(dest="space_command", required=False, parser_class=_Parser)
    c = space_sub.add_parser("check", help="validate a configuration file and report its conditions")
    c.add_argument("config", help="JSON or TOML network configuration")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_space)

    p = sub.add_parser("count", help="exact params and MACs of a config file or zoo network",
                       description="Closed-form and fvcore-measured params and MACs (FLOPs = 2*MACs), the "
                                   "torch flop-counter cross-check and, with --latency, CPU latency.")
    p.add_argument("target", help="zoo network name or a JSON/TOML config file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--latency", action="store_true", help="also measure CPU inference latency")
    p.add_argument("--batch", type=int, default=32, help="larger batch size for --latency (default 32)")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats for --latency (default 10)")
    p.set_defaults(func=cmd_count)

    p = sub.add_parser(
        "search",
        help="multi-objective search (accuracy, params, MACs) over valid IGC networks",
        description="Search the IGC design space for networks on the Pareto front of validation accuracy, "
                    "params and MACs (FLOPs = 2*MACs). Only configurations the complementary condition allows "
                    "are sampled; one over a budget is never trained. Results go to an Optuna study (SQLite "
                    "in OUTPUT_DIR/STUDY/study.db unless --storage); running again continues the study.",
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits",
                   help="digits (bundled, default), cifar10, cifar100, tinyimagenet, imagefolder")
    g.add_argument("--data-dir", help="folder with the data set's official files (or your class folders)")
    g.add_argument("--download", action="store_true", help="download CIFAR when it is not in --data-dir")
    g = p.add_argument_group("space")
    g.add_argument("--family", action="append",
                   help="block family to search (repeatable; default: all of dense, xception, deep_roots, "
                        "igcv1, igcv2, igcv2_star, igcv3)")
    g.add_argument("--width", type=int, action="append", help="first-stage width to search (repeatable)")
    g.add_argument("--blocks", type=int, nargs="+", default=[1, 2], help="blocks per stage to search (default 1 2)")
    g.add_argument("--max-l", type=int, default=4, help="largest L (group convolutions per block, default 4)")
    g = p.add_argument_group("budget (human units: 250k, 1.5M, 30M)")
    g.add_argument("--max-params", help="parameter budget")
    g.add_argument("--max-macs", help="MAC budget (multiply-accumulates; FLOPs = 2*MACs)")
    g.add_argument("--max-latency-ms", help="CPU latency budget at batch 1 (measured)")
    g.add_argument("--latency-objective", action="store_true", help="add measured CPU latency as an objective")
    g = p.add_argument_group("search")
    g.add_argument("--n-trials", type=int, default=40,
                   help="trials to train in this run, to the end or stopped early (default 40)")
    g.add_argument("--total-trials", type=int,
                   help="instead: complete the study up to this many trained trials in all (resumable; any "
                        "number of workers on one storage share the target and never exceed it)")
    g.add_argument("--trial-timeout", type=float, help="fail a trial whose training runs longer (seconds)")
    g.add_argument("--trial-memory-mb", type=float, help="fail a trial when the process's peak memory exceeds it")
    g.add_argument("--heartbeat-interval", type=int, default=20,
                   help="seconds between trial heartbeats; a killed worker's trial is failed and re-run after "
                        "--grace-period (default 20)")
    g.add_argument("--grace-period", type=int, default=60, help="seconds without heartbeat (default 60)")
    g.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    g.add_argument("--sampler", default="nsga2", help="nsga2 (default), tpe, nsga3, random, gp")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler, data split and training")
    g.add_argument("--no-seed-balanced", action="store_true",
                   help="do not start a new study with the balance-condition IGC-V2 and Xception networks")
    g.add_argument("--epochs", type=int, default=4, help="training epochs per trial (default 4)")
    g.add_argument("--no-early-stopping", action="store_true",
                   help="train every trial for all --epochs. By default trials are trained in rungs (epochs "
                        "--min-epochs * eta**k) and stop at a rung when more trials there dominate them on "
                        "(accuracy at the rung, params, MACs) than dominate the best 1/eta (multi-objective "
                        "successive halving); stopped trials are recorded as pruned with their rung accuracy")
    g.add_argument("--eta", type=int, default=3, help="early stopping: rung spacing and 1/eta quota (default 3)")
    g.add_argument("--min-epochs", type=int, default=1, help="early stopping: epochs at the first rung (default 1)")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--lr", type=float, default=0.05, help="peak learning rate (SGD, Nesterov, cosine)")
    g.add_argument("--n-jobs", type=int, default=1, help="parallel trials in this process (optuna backend)")
    g.add_argument("--max-batches-per-epoch", type=int,
                   help="cap the batches of every epoch (smoke tests and quick looks; default: full epochs)")
    g = p.add_argument_group("storage and output")
    g.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///OUTPUT_DIR/STUDY/study.db); use "
                                     "postgresql://... for many processes or machines")
    g.add_argument("--study", help="study name (default igc-nas-DATASET); an existing study is continued")
    g.add_argument("--output-dir", default="igc-nas-runs", help="where run folders go (default igc-nas-runs)")
    g = p.add_argument_group("backend")
    g.add_argument("--backend", default="optuna", help="optuna (default) or ray (Ray Tune + OptunaSearch)")
    g.add_argument("--address", help="Ray cluster address (auto or HOST:PORT); default: a local Ray instance")
    g.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs per Ray trial (default 1)")
    g.add_argument("--max-concurrent", type=int, help="concurrent Ray trials (default: as many as fit)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("trials", help="list the trials of a study", description="List a study's trials, or its "
                       "Pareto front, and optionally export them to CSV.")
    p.add_argument("--storage", required=True, help="Optuna RDB URL, e.g. sqlite:///igc-nas-runs/x/study.db")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--pareto", action="store_true", help="only the feasible non-dominated trials")
    p.add_argument("--csv", help="also write the table to this CSV (or .parquet) file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_trials)

    p = sub.add_parser("dashboard", help="browse a study's Pareto front in the browser",
                       description="Serve a live dashboard of a study (it refreshes while a search is running), "
                                   "or write it as one self-contained HTML file with --html.")
    p.add_argument("--storage", required=True, help="Optuna RDB URL of the study")
    p.add_argument("--study", help="study name (default: the storage's only study)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 picks a free one)")
    p.add_argument("--refresh", type=float, default=5.0, help="seconds between refreshes of the live page")
    p.add_argument("--html", help="write a static report to this file instead of serving")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("pick", help="pick the most accurate model within a budget and export it",
                       description="Choose the most accurate feasible trial on the Pareto front within the "
                                   "budget (human units: 250k, 1.5M), optionally retrain it, and export "
                                   "config.json, model.pt (state dict), model.pt2 (exported program) and "
                                   "report.md. Load it with igcnas.models.load(DIR).")
    p.add_argument("--storage", required=True, help="Optuna RDB URL of the study")
    p.add_argument("--study", help="study name (default: the storage's only study)")
    p.add_argument("--max-params", help="parameter budget")
    p.add_argument("--max-macs", help="MAC budget (multiply-accumulates; FLOPs = 2*MACs)")
    p.add_argument("--max-latency-ms", help="CPU latency budget (needs latency measured during the search)")
    p.add_argument("--retrain-epochs", type=int, help="retrain the pick from scratch for E epochs before export")
    p.add_argument("--export", help="directory to write the model to (must not exist or be empty)")
    p.add_argument("--artifacts", help="artifact folder holding the trials' weights (default: from the study)")
    p.add_argument("--data-dir", help="data folder, for data sets that need one")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split and of retraining")
    p.set_defaults(func=cmd_pick)

    p = sub.add_parser("proxy-check", help="is short training a trustworthy proxy? (Kendall tau)",
                       description="Train about 10 sampled configurations at the search fidelity and at a longer "
                                   "one and print Kendall's tau between the two rankings by validation accuracy.")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir")
    p.add_argument("--family", action="append", help="restrict to a family (repeatable)")
    p.add_argument("--n-configs", type=int, default=10)
    p.add_argument("--short-epochs", type=int, default=4, help="the search fidelity (default 4, as igc-nas search)")
    p.add_argument("--long-epochs", type=int, default=16)
    p.add_argument("--max-batches-per-epoch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_proxy_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
        return int(args.func(args) or 0)
    except (UsageError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"igc-nas: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("igc-nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
