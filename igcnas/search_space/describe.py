"""How a network or one of its stages is described to a person: one home for every reader.

The command line (``igc-nas space``, ``space check``), the search's trial
lines, the dashboard's trial details and the pick report all describe
architectures; they take the text and the per-stage facts (L, K, the
complementary and balance conditions, the layer sequence to draw) from here.
"""

from __future__ import annotations

from typing import Any

from igcnas.search_space.conditions import check_balance, check_complementary
from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import BlockStructure, Interleaved, get_family
from igcnas.search_space.plan import resolve_interleaved, resolve_inverted

__all__ = ["structure_text", "stage_structure_text", "structured_text", "describe_structure", "stage_report"]


def structure_text(structure: BlockStructure) -> str:
    """``K1=1 chain=[4, 4] (L=3)`` or ``expansion=4 groups=2``."""
    if isinstance(structure, Interleaved):
        return f"K1={structure.k1} chain={list(structure.chain)} (L={structure.num_convs})"
    return f"expansion={structure.expansion} groups={structure.groups}"


def _compact(structure: BlockStructure, width: int) -> str:
    if isinstance(structure, Interleaved):
        chain = "x".join(str(k) for k in structure.chain) or "-"
        return f"C{width}:L{structure.num_convs} K1={structure.k1} K={chain}"
    return f"C{width}:t{structure.expansion} G{structure.groups}"


def stage_structure_text(config: NetworkConfig, index: int) -> str:
    return structure_text(get_family(config.family).structure(config.stages[index], index))


def structured_text(stage: StageConfig) -> str:
    """`` SC n2 c/2`` for a structured stage (small kernel n x n, input channels per group / reduction)."""
    if not stage.structured:
        return ""
    return f" SC n{stage.small_kernel or 3} c/{stage.channel_reduction or 1}"


def describe_structure(config: NetworkConfig) -> str:
    """One line: family, blocks, and per stage its width, L and K (``igcv2 B1 | C8:L3 K1=1 K=2x4 | ...``);
    a Structured Convolutions stage adds ``SC n<small kernel> c/<channel reduction>``."""
    family = get_family(config.family)
    parts = [_compact(family.structure(stage, i), stage.width) + structured_text(stage)
             for i, stage in enumerate(config.stages)]
    return f"{config.family} B{config.stages[0].blocks} | " + " | ".join(parts)


def stage_report(family: str, stage: StageConfig, index: int, *, layers: bool = False) -> dict[str, Any]:
    """A stage's structure, complementary and balance status (and, with ``layers``, the layers to draw)."""
    structure = get_family(family).structure(stage, index)
    width = stage.width
    comp = check_complementary(structure, width)
    report: dict[str, Any] = {
        "stage": index, "width": width, "blocks": stage.blocks, "structure": structure_text(structure),
        "dense": comp.dense, "complementary": comp.complementary, "min_paths": comp.min_paths,
        "max_paths": comp.max_paths, "condition": comp.describe(),
    }
    if isinstance(structure, Interleaved):
        balance = check_balance(structure, width)
        report.update(kind="interleaved", L=structure.num_convs, k1=structure.k1, chain=list(structure.chain),
                      balance_terms=list(balance.terms), balance_imbalance=round(balance.imbalance, 4),
                      params_over_bound=round(balance.excess, 4))
        if balance.pointwise_excess is not None:
            report.update(pointwise_imbalance=round(balance.pointwise_imbalance or 1.0, 4),
                          pointwise_params_over_bound=round(balance.pointwise_excess, 4))
        if layers:
            plan = resolve_interleaved(structure, c_in=width, c_out=width, stride=1, size=1)
            drawn = [{"op": "conv3x3", "groups": plan.spatial.groups, "channels": width}]
            for groups, conv in zip(plan.shuffles, plan.pointwise):
                if groups > 1:
                    drawn.append({"op": "shuffle", "groups": groups, "channels": width})
                drawn.append({"op": "conv1x1", "groups": conv.groups, "channels": width})
            report["layers"] = drawn
    else:
        report.update(kind="inverted", expansion=structure.expansion, groups=structure.groups)
        if layers:
            plan_v = resolve_inverted(structure, c_in=width, c_out=width, stride=1, size=1)
            hidden = width * structure.expansion
            drawn = []
            if plan_v.expand is not None:
                drawn.append({"op": "conv1x1", "groups": plan_v.groups, "channels": hidden})
                if plan_v.groups > 1:
                    drawn.append({"op": "shuffle", "groups": plan_v.groups, "channels": hidden})
            drawn.append({"op": "conv3x3", "groups": hidden, "channels": hidden})
            drawn.append({"op": "conv1x1", "groups": plan_v.groups, "channels": width})
            report["layers"] = drawn
    return report
