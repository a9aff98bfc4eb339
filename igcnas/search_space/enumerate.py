"""The valid choices of the IGC design space, stage by stage, and the identity of a network.

For one block family and a stage width ``C`` the valid choices are those the
conditions allow: IGC-V1 and IGC-V2 blocks must be complementary (``k1 *
prod(K_l) = C``, checked exactly by :mod:`.conditions` in the tests), Deep
Roots takes any proper group size, IGC-V2* any branch size with its L*.
A network is a fixed stage template (widths x, 2x, 4x, B blocks each) with one
choice per stage (:func:`template_network`), so the space for a family is a
product of per-stage lists, which :mod:`igcnas.search_space.design_space`
counts, indexes and samples uniformly without materialising it.
Encodings that describe the same architecture (an IGC-V2 block with one
branch is Xception) are excluded by construction and identified by
:func:`arch_id`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import Interleaved, _divisors, get_family, igcv2_star_l
from igcnas.search_space.plan import InterleavedPlan, resolve, resolve_interleaved, resolve_inverted
from igcnas.errors import BadInput

__all__ = ["ordered_factorizations", "block_options", "template_options", "template_network", "arch_id"]


def ordered_factorizations(n: int, *, min_factor: int = 2, max_parts: int | None = None) -> list[tuple[int, ...]]:
    """All ordered tuples of factors >= ``min_factor`` whose product is ``n`` (at most ``max_parts``)."""
    if n < 1:
        raise BadInput(f"n must be >= 1, got {n}")
    results: list[tuple[int, ...]] = []

    def extend(prefix: tuple[int, ...], rest: int) -> None:
        if rest == 1:
            if prefix:
                results.append(prefix)
            return
        if max_parts is not None and len(prefix) >= max_parts:
            return
        for d in _divisors(rest):
            if d >= min_factor:
                extend(prefix + (d,), rest // d)

    extend((), n)
    return results


def block_options(
    family: str, width: int, *, max_l: int = 4, c_in: int | None = None, transition: str = "input_width"
) -> list[dict[str, Any]]:
    """Valid stage parameters for ``family`` at ``width`` channels (each a dict of StageConfig fields).

    ``max_l`` bounds L, the number of group convolutions in a block. With ``c_in`` (the width
    entering the stage), options whose first block cannot map ``c_in -> width`` are dropped.
    """
    options = _options(family, width, max_l)
    if c_in is None or c_in == width:
        return options
    fam = get_family(family)
    kept = []
    for option in options:
        structure = fam.structure(StageConfig(width=width, blocks=1, **option))
        try:
            if isinstance(structure, Interleaved):
                resolve_interleaved(structure, c_in=c_in, c_out=width, stride=2, size=2, transition=transition)
            else:
                resolve_inverted(structure, c_in=c_in, c_out=width, stride=2, size=2)
        except ValueError:
            continue
        kept.append(option)
    return kept


def _options(family: str, width: int, max_l: int) -> list[dict[str, Any]]:
    get_family(family)
    if max_l < 1:
        raise BadInput(f"max_l must be >= 1, got {max_l}")
    proper = [d for d in _divisors(width) if 1 < d < width]
    if family in ("dense", "xception"):
        return [{}]
    if family == "deep_roots":
        return [{"k1": g} for g in proper]
    if family == "igcv1":
        return [{"k1": m} for m in proper]
    if family == "igcv2":
        # L >= 3 (L = 2 with one branch is Xception); channel-wise spatial conv, complementary chain.
        return [{"chain": c} for c in ordered_factorizations(width, max_parts=max_l - 1) if len(c) >= 2]
    if family == "igcv2_star":
        options = []
        for k in proper:
            l_star = igcv2_star_l(width, k)
            if l_star <= max_l:
                options.append({"k": k, "l": l_star})
        return options
    if family == "igcv3":
        return [{"expansion": t, "groups": g} for t in (2, 4, 6) for g in (1, 2, 4) if width % g == 0]
    raise BadInput(f"no enumeration rule for family {family!r}")


def template_options(family: str, width: int, *, num_stages: int, max_l: int) -> list[list[dict[str, Any]]]:
    """Per-stage options of the stage template (widths x1, x2, x4...; stage i > 0 receives width * 2**(i-1))."""
    return [block_options(family, width * 2**i, max_l=max_l, c_in=width * 2 ** max(i - 1, 0))
            for i in range(num_stages)]


def template_network(family: str, width: int, blocks: int, choices: list[dict[str, Any]], *, num_classes: int,
                     input_size: int, in_channels: int, stem_stride: int) -> NetworkConfig:
    """The stage template with one option per stage: stem at ``width``, stride 2 from the second stage."""
    stages = tuple(
        StageConfig(width=width * 2**i, blocks=blocks, stride=1 if i == 0 else 2, **choice)
        for i, choice in enumerate(choices)
    )
    return NetworkConfig(family=family, stages=stages, stem_width=width, stem_stride=stem_stride,
                         num_classes=num_classes, input_size=input_size, in_channels=in_channels)


def _canonical(config: NetworkConfig) -> dict[str, Any]:
    """What the network computes, independent of how it was encoded (family name, transition flag)."""
    plan = resolve(config)

    def conv(c: Any) -> list[int]:
        # A structured conv adds its small kernel (c_g, n); plain ones keep the ids they always had.
        return [c.c_in, c.c_out, c.kernel, c.stride, c.groups, c.size_in, *(c.small or ())]

    stages = []
    for stage in plan.stages:
        units = []
        for unit in stage:
            blocks = []
            for block in unit.blocks:
                if isinstance(block, InterleavedPlan):
                    blocks.append(["i", [conv(c) for c in block.convs], list(block.shuffles)])
                else:
                    blocks.append(["v", [conv(c) for c in block.convs], block.groups, block.residual])
            shortcut = None
            if unit.shortcut is not None:
                shortcut = [unit.shortcut.kind, unit.shortcut.c_in, unit.shortcut.c_out, unit.shortcut.stride]
                if unit.shortcut.projection is not None and unit.shortcut.projection.groups > 1:
                    shortcut.append(unit.shortcut.projection.groups)
            units.append([blocks, shortcut])
        stages.append(units)
    return {
        "input": [config.in_channels, config.input_size],
        "stem": conv(plan.stem),
        "stages": stages,
        "head": conv(plan.head) if plan.head is not None else None,
        "classes": config.num_classes,
        "activation": get_family(config.family).activation,
    }


def arch_id(config: NetworkConfig) -> str:
    """A short stable id: equal for configurations that build the same network."""
    text = json.dumps(_canonical(config), separators=(",", ":"), sort_keys=True)
    return "igc-" + hashlib.sha256(text.encode()).hexdigest()[:16]
