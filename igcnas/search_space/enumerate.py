"""Enumerating and sampling the valid IGC design space.

For one block family and a stage width ``C`` the valid choices are those the
conditions allow: IGC-V1 and IGC-V2 blocks must be complementary (``k1 *
prod(K_l) = C``, checked exactly by :mod:`.conditions` in the tests), Deep
Roots takes any proper group size, IGC-V2* any branch size with its L*.
A network is a fixed stage template (widths x, 2x, 4x, B blocks each) with one
choice per stage, so the space for a family is a product of per-stage lists
and can be counted, indexed and sampled uniformly without materialising it.
Encodings that describe the same architecture (an IGC-V2 block with one
branch is Xception) are excluded by construction and identified by
:func:`arch_id`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import Interleaved, _divisors, get_family, igcv2_star_l
from igcnas.search_space.plan import InterleavedPlan, resolve, resolve_interleaved, resolve_inverted
from igcnas.errors import BadInput

if TYPE_CHECKING:
    from igcnas.search_space.spec import SearchSpec

__all__ = ["ordered_factorizations", "block_options", "template_options", "template_network",
           "DesignSpace", "arch_id"]


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


@dataclass
class DesignSpace:
    """Counting, indexing, enumeration and uniform sampling over a :class:`~igcnas.search_space.spec.SearchSpec`.

    The space is the union over (family, width, blocks) cells of the product of the per-stage options.
    """

    spec: SearchSpec

    def __post_init__(self) -> None:
        # (family, width, blocks) -> per-stage option lists; only non-empty products are kept.
        self._cells: list[tuple[str, int, int, list[list[dict[str, Any]]], int]] = []
        for family in self.spec.families:
            for width in self.spec.widths:
                for blocks in self.spec.blocks:
                    per_stage = self.stage_options(family, width, blocks)
                    size = math.prod(len(options) for options in per_stage)
                    if size:
                        self._cells.append((family, width, blocks, per_stage, size))

    def stage_options(self, family: str, width: int, blocks: int) -> list[list[dict[str, Any]]]:
        """Per-stage option lists; stage i > 0 receives width * 2**(i-1) channels.

        Two options that build the same stage (possible when a stage has one block, which is
        its width-changing block) are kept once, so that counting equals distinct networks.
        """
        out = []
        fam = get_family(family)
        for i, options in enumerate(self.spec.stage_options(family, width)):
            c_out, c_in = width * 2**i, width * 2 ** max(i - 1, 0)
            seen, kept = set(), []
            for option in options:
                structure = fam.structure(StageConfig(width=c_out, blocks=1, **option))
                key: Any = structure
                if blocks == 1 and c_in != c_out and isinstance(structure, Interleaved):
                    first = resolve_interleaved(structure, c_in=c_in, c_out=c_out, stride=2, size=2)
                    key = (first.convs, first.shuffles)
                if key not in seen:
                    seen.add(key)
                    kept.append(option)
            out.append(kept)
        return out

    def count(self) -> int:
        return sum(cell[-1] for cell in self._cells)

    def count_by_family(self) -> dict[str, int]:
        counts: dict[str, int] = {f: 0 for f in self.spec.families}
        for family, *_, size in self._cells:
            counts[family] += size
        return counts

    def __getitem__(self, index: int) -> NetworkConfig:
        if not 0 <= index < self.count():
            raise IndexError(f"index {index} outside the space of {self.count()} networks")
        for family, width, blocks, per_stage, size in self._cells:
            if index < size:
                choices = []
                for options in reversed(per_stage):
                    index, digit = divmod(index, len(options))
                    choices.append(options[digit])
                return self.spec.build(family, width, blocks, list(reversed(choices)))
            index -= size
        raise IndexError(index)  # unreachable: the range was checked above

    def __iter__(self) -> Iterator[NetworkConfig]:
        for index in range(self.count()):
            yield self[index]

    def sample(self, n: int, *, seed: int) -> list[NetworkConfig]:
        """``n`` networks drawn uniformly (with replacement) using ``random.Random(seed)``."""
        rng = random.Random(seed)
        total = self.count()
        if total == 0:
            raise BadInput("the design space is empty: no width admits a valid configuration")
        return [self[rng.randrange(total)] for _ in range(n)]

    def covering(self, *, fits: Callable[[NetworkConfig], bool] | None = None,
                 structures: tuple[dict[str, int], ...] = ({},)) -> Iterator[NetworkConfig]:
        """Few networks that together hold every stage choice of the space (of the ones that can fit).

        A stage's units depend only on its own choice (its input width and size are fixed by the
        template), so one network per (cell, stage, choice, structure) -- the choice at that stage, the
        cheapest choice elsewhere -- covers every distinct unit: about 1,400 networks for the 172,910
        of the default small-image space. With ``fits`` (a budget), a choice whose cheapest network
        does not fit is skipped: no network of the space that fits uses it (costs add up per stage).
        ``structures``: the Structured Convolution fields each stage may also take (``{}``: plain).
        """
        from igcnas.search_space.costs import closed_form_costs

        def cost(config: NetworkConfig) -> tuple[int, int]:
            report = closed_form_costs(config)
            return report.macs, report.params

        for family, width, blocks, per_stage, _ in self._cells:
            def build(i: int, option: dict[str, Any], base: list[dict[str, Any]]) -> NetworkConfig:
                choices = list(base)
                choices[i] = option
                return self.spec.build(family, width, blocks, choices)

            first = [options[0] for options in per_stage]
            # The cheapest choice elsewhere by MACs and by params (a budget may bound either): a choice is
            # skipped only when it fits with neither.
            bases = [[min(options, key=lambda o, i=i: cost(build(i, o, first))[dim])
                      for i, options in enumerate(per_stage)] for dim in (0, 1)]
            for i, options in enumerate(per_stage):
                for option in options:
                    for structure in structures:
                        built = [build(i, {**option, **structure}, base) for base in bases]
                        if built[1] == built[0]:
                            built.pop()
                        for config in built:
                            if fits is None or fits(config):
                                yield config
                                break


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
