"""What the gene encoding is made of, below both the genome and its moves.

One gene's distribution (:class:`GeneSpec`), a decoded gene vector (:class:`Point`), the names of
the genes (:class:`GeneNames`), L of a stage option (:func:`l_of_option`), and per (family, width) cell the stage
tables that the ``L`` and ``pos`` genes index (:func:`stage_tables`). The encoding as a whole, its
repair rule and why it looks this way are documented in :mod:`igcnas.search_space.genome`; the moves
(:mod:`igcnas.search_space.moves`) and the genome both build on this module, so neither imports the
other's back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping

from igcnas.search_space.config import StageConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.families import Interleaved, get_family
from igcnas.search_space.spec import SearchSpec, option_label

__all__ = ["GeneSpec", "GeneNames", "StageTable", "Point", "FAMILY", "WIDTH", "BLOCKS", "INVERTED_L", "nearest",
           "l_of_option", "stage_tables"]

# Group convolutions of an IGC-V3 inverted residual block: group 1x1 expand, channel-wise 3x3, group 1x1 project.
INVERTED_L = 3

FAMILY, WIDTH, BLOCKS = "family", "width", "blocks"


class GeneNames:
    """The names of stage i's genes (the cell's are :data:`FAMILY`, :data:`WIDTH`, :data:`BLOCKS`): what
    trial records, samplers and moves call them. A base of the genome, so that both the encoding and its
    moves read them from here."""

    l_gene = staticmethod(lambda i: f"s{i}.L")  # the number of group convolutions of stage i
    pos_gene = staticmethod(lambda i: f"s{i}.pos")  # the position among that L's factorisations, in cost order
    sk_gene = staticmethod(lambda i: f"s{i}.sk")  # a structured stage's kernel
    cr_gene = staticmethod(lambda i: f"s{i}.cr")  # a structured stage's channel reduction


@dataclass(frozen=True, kw_only=True)
class GeneSpec:
    """One gene's distribution in plain terms (turned into an Optuna distribution by ``nas.gene_suggestions``).

    ``kind`` is ``"categorical"`` (``choices``), ``"int"`` (``low``..``high`` inclusive) or ``"float"``
    (``low``..``high``).
    """

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError(f"gene {self.name!r}: choices must not be empty")
        elif self.kind in ("int", "float"):
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError(f"gene {self.name!r}: need low <= high, got {self.low!r}, {self.high!r}")
        else:
            raise ValueError(f"gene {self.name!r}: kind must be categorical, int or float, got {self.kind!r}")

    def uniform(self, rng: random.Random) -> Any:
        """A value drawn uniformly from the distribution (what a random sampler would give)."""
        if self.kind == "categorical":
            return rng.choice(self.choices)
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))  # type: ignore[arg-type]
        return rng.uniform(float(self.low), float(self.high))  # type: ignore[arg-type]


@dataclass(frozen=True)
class StageTable:
    """The options of one stage of one (family, width) cell, grouped by L and sorted by cost."""

    ls: tuple[int, ...]  # the L values offered, ascending
    by_l: dict[int, tuple[dict[str, Any], ...]]  # L -> options, cheapest first

    def nearest_l(self, value: int) -> int:
        return nearest(self.ls, value)


@dataclass(frozen=True)
class Point:
    """A decoded (repaired) gene vector: indices only, hashable, cheap to compare.

    ``stages[i]`` is ``(L, option index, number of options with that L)``; ``structure[i]`` is
    ``(small-kernel index, channel-reduction index)`` of stage i in a structured genome, and the
    tuple is empty (every stage plain) otherwise, so plain points stay what they were.
    """

    family: str
    width_index: int
    blocks_index: int
    stages: tuple[tuple[int, int, int], ...]
    structure: tuple[tuple[int, int], ...] = ()


def nearest(values: tuple[int, ...] | list[int], target: int) -> int:
    """The value closest to ``target``; ties go to the smaller value (the repair rule)."""
    return min(values, key=lambda v: (abs(v - target), v))


def l_of_option(family: str, option: Mapping[str, Any], width: int) -> int:
    """L (group convolutions per block) of one stage option at ``width`` channels."""
    structure = get_family(family).structure(StageConfig(width=width, blocks=1, **option))
    return structure.num_convs if isinstance(structure, Interleaved) else INVERTED_L


def stage_tables(spec: SearchSpec, family: str, width: int) -> tuple[StageTable, ...]:
    """Per stage, the options of the cell grouped by L and sorted by the stage's own cost.

    A stage's cost is read off the network that takes the first option in every other stage
    (stage costs add up and stages are independent, as in
    :func:`~igcnas.search_space.spec.space_bounds`), at the largest searched depth so that the
    repeated blocks, not the width-changing one, set the order.
    """
    per_stage = spec.stage_options(family, width)
    if not all(per_stage):
        raise ValueError(f"({family}, width {width}) is not a valid cell of the space")
    reference = [options[0] for options in per_stage]
    blocks = max(spec.blocks)
    tables = []
    for i, options in enumerate(per_stage):
        grouped: dict[int, list[tuple[int, int, str, dict[str, Any]]]] = {}
        for option in options:
            choice = reference.copy()
            choice[i] = option
            cost = closed_form_costs(spec.build(family, width, blocks, choice))
            grouped.setdefault(l_of_option(family, option, width * 2**i), []).append(
                (cost.params, cost.macs, option_label(option), option))
        by_l = {l_value: tuple(entry[3] for entry in sorted(entries, key=lambda e: e[:3]))
                for l_value, entries in grouped.items()}
        tables.append(StageTable(ls=tuple(sorted(by_l)), by_l=by_l))
    return tuple(tables)
