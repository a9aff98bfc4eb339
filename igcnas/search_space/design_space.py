"""Every network of a :class:`~igcnas.search_space.spec.SearchSpec`: counted, indexed, enumerated, sampled
and covered, without materialising the space.

It sits above the spec (it reads the spec's per-stage options and builds through
:meth:`~igcnas.search_space.spec.SearchSpec.build`), while :mod:`igcnas.search_space.enumerate`, which
the spec reads its options from, stays below it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from igcnas.errors import BadInput
from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.families import Interleaved, get_family
from igcnas.search_space.plan import resolve_interleaved
from igcnas.search_space.spec import SearchSpec

__all__ = ["DesignSpace"]


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
