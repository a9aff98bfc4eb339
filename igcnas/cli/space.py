"""``igc-nas space``: the valid design space of a family and width, and ``space check`` of a config file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from igcnas.cli._common import Parser
from igcnas.errors import BadInput

__all__ = ["register"]


def register(sub: Any) -> None:
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
    space_sub = p.add_subparsers(dest="space_command", required=False, parser_class=Parser)
    c = space_sub.add_parser("check", help="validate a configuration file and report its conditions")
    c.add_argument("config", help="JSON or TOML network configuration")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_space_check)


def cmd_space(args: argparse.Namespace) -> int:
    from igcnas.search_space.config import StageConfig
    from igcnas.search_space.describe import stage_report, stage_structure_text
    from igcnas.search_space.design_space import DesignSpace
    from igcnas.search_space.enumerate import arch_id
    from igcnas.search_space.spec import SearchSpec

    if args.family is None or args.width is None:
        raise BadInput("space needs --family and --width (or: igc-nas space check CONFIG.json)")
    spec = SearchSpec(families=(args.family,), widths=(args.width,), blocks=(args.blocks,), max_l=args.max_l,
                      num_stages=args.stages)
    space = DesignSpace(spec)
    stages = []
    for i, options in enumerate(space.stage_options(args.family, args.width, args.blocks)):
        width = args.width * 2**i
        rows = [stage_report(args.family, StageConfig(width=width, blocks=1, **o), i) for o in options]
        stages.append({"stage": i, "width": width, "options": rows})
    samples = space.sample(min(args.samples, space.count()), seed=args.seed) if space.count() else []
    result = {
        "family": args.family, "width": args.width, "count": space.count(), "stages": stages,
        "samples": [{"arch_id": arch_id(c), "stages": [stage_structure_text(c, i) for i in range(len(c.stages))]}
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


def cmd_space_check(args: argparse.Namespace) -> int:
    from igcnas.search_space.config_io import config_to_dict, load_config
    from igcnas.search_space.costs import closed_form_costs
    from igcnas.search_space.describe import stage_report
    from igcnas.search_space.enumerate import arch_id

    config = load_config(args.config)
    costs = closed_form_costs(config)  # also resolves every shape, raising on misfits
    stages = [stage_report(config.family, stage, i) for i, stage in enumerate(config.stages)]
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
