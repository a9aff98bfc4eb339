"""``igc-nas zoo`` and ``igc-nas count``: the reference networks and the exact costs of one network."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from igcnas.cli._common import fmt_count, print_table, progress
from igcnas.errors import BadInput

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("zoo", help="list the paper's reference networks with exact params and MACs",
                       description="Every zoo network with params, conv params, MACs (FLOPs = 2*MACs), the "
                                   "fvcore total, and the ratio to the figures printed in the paper.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--closed-form", action="store_true",
                   help="skip building the networks (no fvcore measurement; much faster)")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("count", help="exact params and MACs of a config file or zoo network",
                       description="Closed-form and fvcore-measured params and MACs (FLOPs = 2*MACs), the "
                                   "torch flop-counter cross-check and, with --latency, CPU latency.")
    p.add_argument("target", help="zoo network name or a JSON/TOML config file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--latency", action="store_true", help="also measure CPU inference latency")
    p.add_argument("--batch", type=int, default=32, help="larger batch size for --latency (default 32)")
    p.set_defaults(func=cmd_count)


def _zoo_rows(measure: bool) -> list[dict[str, Any]]:
    from igcnas.search_space.costs import closed_form_costs
    from igcnas.search_space.enumerate import arch_id
    from igcnas.search_space.paper_networks import ZOO, paper_ratios

    rows = []
    for entry in progress(list(ZOO.values()), "measuring zoo networks with fvcore", enabled=measure):
        costs = closed_form_costs(entry.config)
        row: dict[str, Any] = {
            "name": entry.name, "family": entry.config.family, "depth": entry.config.depth,
            "arch_id": arch_id(entry.config), "params": costs.params, "conv_params": costs.conv_params,
            "macs": costs.macs, "flops": costs.flops, "closed_form_fvcore_total": costs.fvcore_total,
        }
        if measure:
            from igcnas.evaluators.measured_costs import measure_config

            measured = measure_config(entry.config)
            row.update(fvcore_total=measured.fvcore_total, fvcore_by_operator=measured.by_operator,
                       fvcore_uncounted=measured.uncounted,
                       closed_form_equals_fvcore=(measured.by_operator == costs.by_operator
                                                  and measured.params == costs.params))
        paper = []
        for fig in entry.paper:
            item: dict[str, Any] = {"table": fig.table, "scope": fig.scope, "tolerance": fig.tolerance}
            params_ratio, macs_ratio = paper_ratios(entry, fig)
            if params_ratio is not None:
                item.update(paper_params=fig.params, params_ratio=round(params_ratio, 4))
            if macs_ratio is not None:
                item.update(paper_macs=fig.macs, macs_ratio=round(macs_ratio, 4))
            paper.append(item)
        row["paper"] = paper
        rows.append(row)
    return rows


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
        table.append({"name": row["name"], "depth": row["depth"], "params": fmt_count(row["params"]),
                      "conv_params": fmt_count(row["conv_params"]), "macs": fmt_count(row["macs"]),
                      "flops": fmt_count(row["flops"]),
                      "fvcore": fmt_count(row.get("fvcore_total", row["closed_form_fvcore_total"])),
                      "paper": "; ".join(ratios)})
    print_table(table, [("name", "name"), ("depth", "D"), ("params", "params"), ("conv_params", "conv params"),
                        ("macs", "MACs"), ("flops", "FLOPs=2*MACs"), ("fvcore", "fvcore total"),
                        ("paper", "ours / paper")])
    return 0


def config_or_zoo(text: str) -> Any:
    """A zoo network by name, or a configuration file."""
    from igcnas.search_space.config_io import load_config
    from igcnas.search_space.paper_networks import ZOO

    if text in ZOO:
        return ZOO[text].config
    if Path(text).suffix.lower() in (".json", ".toml") or Path(text).exists():
        return load_config(text)
    raise BadInput(f"{text!r} is neither a zoo network (see 'igc-nas zoo') nor a config file")


def cmd_count(args: argparse.Namespace) -> int:
    from igcnas.evaluators.measured_costs import measure_costs, measure_latency
    from igcnas.models import build_model
    from igcnas.search_space.costs import closed_form_costs, uncounted_operations
    from igcnas.search_space.enumerate import arch_id

    config = config_or_zoo(args.target)
    closed = closed_form_costs(config)
    model = build_model(config, seed=0, form="deployed")  # what is counted and deployed
    shape = config.input_shape
    measured = measure_costs(model, shape)
    structured = config.structured
    result: dict[str, Any] = {
        "target": args.target, "arch_id": arch_id(config), "closed_form": closed.as_dict(),
        "fvcore": measured.as_dict(), "uncounted_operations": uncounted_operations(config),
        "closed_form_equals_fvcore": closed.by_operator == measured.by_operator and closed.params == measured.params,
        "torch_flop_counter_equals_2x_macs": measured.torch_flops == 2 * measured.macs,
    }
    if args.latency:
        latency = measure_latency(model, shape, batch_sizes=(1, args.batch))
        result["latency_ms"] = {str(k): round(v, 3) for k, v in latency.ms_by_batch.items()}
        result["latency_threads"] = latency.threads
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.target} ({config.family}, arch id {result['arch_id']})")
    print(f"  params        {closed.params:>14,}  (conv weights {closed.conv_params:,})")
    print(f"  MACs          {closed.macs:>14,}  (FLOPs = 2*MACs = {closed.flops:,})")
    if structured:
        print(f"  Structured Convolutions: the counts above are the deployed form (sum-pool + small kernels); "
              f"training form {closed.train_params:,} params (full kernels); sum-pools add "
              f"{closed.sum_pool_adds:,} additions (not MACs)")
    print(f"  fvcore total  {measured.fvcore_total:>14,}  by operator {measured.by_operator}")
    print(f"  not counted by fvcore: {measured.uncounted or 'nothing'}; elementwise ops in the plan: "
          f"{result['uncounted_operations']}")
    print(f"  closed form == fvcore: {result['closed_form_equals_fvcore']}; torch flop counter == 2*MACs: "
          f"{result['torch_flop_counter_equals_2x_macs']}")
    if args.latency:
        lat = ", ".join(f"batch {k}: {v} ms" for k, v in result["latency_ms"].items())
        print(f"  CPU latency (PyTorch eager, {result['latency_threads']} threads; fastest block taken while the "
              f"machine ran at full speed): {lat}")
    return 0
