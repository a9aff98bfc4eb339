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
    from igcnas.search_space.enumerate import DesignSpace, SpaceSpec, arch_id

    if args.family is None or args.width is None:
        raise UsageError("space needs --family and --width (or: igc-nas space check CONFIG.json)")
    spec = SpaceSpec(families=(args.family,), widths=(args.width,), blocks_per_stage=args.blocks,
                     max_l=args.max_l, num_stages=args.stages)
    space = DesignSpace(spec)
    stages = []
    from igcnas.search_space.config import StageConfig

    for i, options in enumerate(space.stage_options(args.family, args.width)):
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
