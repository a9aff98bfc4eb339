"""A fixed-length gene encoding of the search space (pure Python: no torch, no Optuna).

Why genes at all
----------------
A define-by-run space whose parameter names depend on earlier answers
(``width@igcv2``, ``igcv2.s1.K@C32.L3``) is valid but hostile to evolutionary and
model-based samplers: Optuna's NSGA-II builds its relative search space with
``IntersectionSearchSpace``, which keeps only the parameters that every
completed trial has with the same distribution, so only ``family`` and
``blocks`` were ever evolved and everything else was drawn at random.

The genome has the same genes, with the same distributions, in every trial:

=============  ===========  ==================================================
gene           kind         meaning
=============  ===========  ==================================================
``family``     categorical  block family (only families with a valid network)
``width``      int          index into the searched first-stage widths, ascending
``blocks``     int          index into the searched blocks per stage, ascending
``s{i}.L``     int          L of stage i: the number of group convolutions of
                            its block (1 .. :attr:`Genome.max_l_gene`)
``s{i}.pos``   float        position in [0, 1] among stage i's options with that
                            L, ordered by the stage's own cost
``s{i}.sk``    int          only when ``spec.structured``: index into
                            :data:`~igcnas.search_space.spec.STRUCTURED_KERNELS`
                            (3, 2, 1), the small kernel of stage i's Structured
                            Convolutions; 0 is the plain 3x3
``s{i}.cr``    int          only when ``spec.structured``: index into
                            :data:`~igcnas.search_space.spec.CHANNEL_REDUCTIONS`
                            (1, 2, 4), the reduction of the input channels per
                            group; 0 is the full group
=============  ===========  ==================================================

Structure genes need no repair: every (small kernel, reduction) is valid for
every convolution, so the distributions are fixed and every value decodes as
is; both are ordered by cheapness, so a step of one is a neighbouring
architecture too. Without ``spec.structured`` the genome has no structure
genes and decodes only plain networks, exactly as before the option existed.

L per family: dense 1; xception, deep_roots and igcv1 2 (a spatial and one
pointwise group convolution); igcv2 ``len(chain) + 1``; igcv2_star its L*;
igcv3 3 (its inverted residual block always has three: the group 1x1
expansion, the channel-wise 3x3 and the group 1x1 projection). So L always
means "group convolutions per block" and the gene's upper bound is
``max(spec.max_l, 3)`` when igcv3 is searched (``spec.max_l`` otherwise).

Repair rule (:meth:`Genome.decode` accepts every value the gene distributions
produce, so any sampler's output is a valid, complementary network):

1. ``(family, width)`` not a valid cell: take the nearest width index that is
   one for this family (ties: the smaller width);
2. stage i's L not offered there: take the nearest L that is (ties: smaller);
3. option index = ``min(floor(pos * n), n - 1)`` over the ``n`` options of that
   L, sorted by cost.

Neighbouring gene values are neighbouring architectures: options are sorted by
the params of the network that differs only in that stage (then MACs, then
:func:`~igcnas.search_space.spec.option_label`), so a small change of ``pos``
moves to a factorisation of similar cost, a change of L by one adds or removes
one group convolution, and a width step moves to the next searched width.
Stage genes are relative (a rank in cost order), so they keep a meaning when
crossover or mutation changes the family or the width under them.

The option tables are per (family, width, stage), not per blocks: a stage with
one block may build the same network from two options (its only block is the
width-changing one), so two gene values can decode to the same architecture;
the sampler compares :func:`~igcnas.search_space.enumerate.arch_id`, not genes,
to avoid re-proposing a network.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Mapping

from igcnas.errors import BadInput
from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.families import Interleaved, get_family
from igcnas.search_space.spec import (CHANNEL_REDUCTIONS, STRUCTURED_KERNELS, SearchSpec, choices_of, option_label,
                                      structure_fields, structure_indices)

__all__ = ["GeneSpec", "Genome", "Point", "StageTable", "genome_for", "seed_configs", "zoo_seed_configs",
           "option_l", "INVERTED_L"]

log = logging.getLogger(__name__)

# Group convolutions of an IGC-V3 inverted residual block: group 1x1 expand, channel-wise 3x3, group 1x1 project.
INVERTED_L = 3

FAMILY, WIDTH, BLOCKS = "family", "width", "blocks"


@dataclass(frozen=True, kw_only=True)
class GeneSpec:
    """One gene's distribution in plain terms (turned into an Optuna distribution by ``nas.space``).

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
        return _nearest(self.ls, value)


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


def _nearest(values: tuple[int, ...] | list[int], target: int) -> int:
    """The value closest to ``target``; ties go to the smaller value (the repair rule)."""
    return min(values, key=lambda v: (abs(v - target), v))


def option_l(family: str, option: Mapping[str, Any], width: int) -> int:
    """L (group convolutions per block) of one stage option at ``width`` channels."""
    structure = get_family(family).structure(StageConfig(width=width, blocks=1, **option))
    return structure.num_convs if isinstance(structure, Interleaved) else INVERTED_L


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"gene {name!r} must be an integer, got {value!r}")
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"gene {name!r} must be an integer, got {value!r}") from None
    if as_int != value:
        raise ValueError(f"gene {name!r} must be an integer, got {value!r}")
    return as_int


_OP = re.compile(r"^(step_stage|step_l|step_sk|step_cr|step_width|step_blocks|set_family)\(([^()]*)\)$")


class Genome:
    """The fixed genes of a :class:`~igcnas.search_space.spec.SearchSpec`: decode, encode, move.

    Construction is cheap (the per-cell option tables are built on first use and cached);
    share one per spec through :func:`genome_for`. Instances pickle without their caches, so
    a sampler holding one travels to Ray workers cheaply.
    """

    def __init__(self, spec: SearchSpec) -> None:
        if not isinstance(spec, SearchSpec):
            raise ValueError(f"spec must be a SearchSpec, got {type(spec).__name__}")
        self.spec = spec
        cells = spec.cells()
        if not cells:
            raise BadInput("spec: the search space is empty (no family/width combination has a valid network)")
        self.families: tuple[str, ...] = tuple(dict.fromkeys(f for f, _ in cells))
        self.widths: tuple[int, ...] = tuple(sorted(spec.widths))
        self.blocks: tuple[int, ...] = tuple(sorted(spec.blocks))
        self.num_stages = spec.num_stages
        self.structured = spec.structured
        self.max_l_gene = max(spec.max_l, INVERTED_L if "igcv3" in self.families else 1)
        cell_set = set(cells)
        # Per family, the width indices that form a valid cell (what the width repair snaps to).
        self.valid_widths: dict[str, tuple[int, ...]] = {
            f: tuple(j for j, w in enumerate(self.widths) if (f, w) in cell_set) for f in self.families}
        genes = [GeneSpec(name=FAMILY, kind="categorical", choices=self.families),
                 GeneSpec(name=WIDTH, kind="int", low=0, high=len(self.widths) - 1),
                 GeneSpec(name=BLOCKS, kind="int", low=0, high=len(self.blocks) - 1)]
        for i in range(self.num_stages):
            genes.append(GeneSpec(name=self.l_gene(i), kind="int", low=1, high=self.max_l_gene))
            genes.append(GeneSpec(name=self.pos_gene(i), kind="float", low=0.0, high=1.0))
            if self.structured:
                genes.append(GeneSpec(name=self.sk_gene(i), kind="int", low=0, high=len(STRUCTURED_KERNELS) - 1))
                genes.append(GeneSpec(name=self.cr_gene(i), kind="int", low=0, high=len(CHANNEL_REDUCTIONS) - 1))
        self.genes: tuple[GeneSpec, ...] = tuple(genes)
        self.gene_names: tuple[str, ...] = tuple(g.name for g in genes)
        self._init_caches()

    # -- pickling: caches are rebuilt lazily where the genome lands --------------------------------------

    def _init_caches(self) -> None:
        self._tables: dict[tuple[str, int], tuple[StageTable, ...]] = {}
        self._arch: dict[Point, str] = {}
        self._costs: dict[Point, tuple[int, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_tables", "_arch", "_costs")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_caches()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Genome) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Genome({len(self.genes)} genes, families={list(self.families)})"

    # -- names -----------------------------------------------------------------------------------------

    @staticmethod
    def l_gene(i: int) -> str:
        return f"s{i}.L"

    @staticmethod
    def pos_gene(i: int) -> str:
        return f"s{i}.pos"

    @staticmethod
    def sk_gene(i: int) -> str:
        return f"s{i}.sk"

    @staticmethod
    def cr_gene(i: int) -> str:
        return f"s{i}.cr"

    def stage_genes(self, params: Mapping[str, Any], i: int) -> tuple[Any, Any]:
        """Stage i's ``(L, pos)`` genes as given."""
        return params[self.l_gene(i)], params[self.pos_gene(i)]

    def stage_gene_names(self, i: int) -> tuple[str, ...]:
        """Every gene of stage i (``L``, ``pos``, and ``sk``, ``cr`` when structured): what a crossover
        takes together from one parent."""
        names = (self.l_gene(i), self.pos_gene(i))
        return names + (self.sk_gene(i), self.cr_gene(i)) if self.structured else names

    # -- option tables ---------------------------------------------------------------------------------

    def tables(self, family: str, width: int) -> tuple[StageTable, ...]:
        """Per stage, the options of the cell grouped by L and sorted by the stage's own cost.

        A stage's cost is read off the network that takes the first option in every other stage
        (stage costs add up and stages are independent, as in
        :func:`~igcnas.search_space.spec.space_bounds`), at the largest searched depth so that the
        repeated blocks, not the width-changing one, set the order.
        """
        key = (family, width)
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        per_stage = self.spec.stage_options(family, width)
        if not all(per_stage):
            raise ValueError(f"({family}, width {width}) is not a valid cell of the space")
        reference = [options[0] for options in per_stage]
        blocks = self.blocks[-1]
        tables = []
        for i, options in enumerate(per_stage):
            grouped: dict[int, list[tuple[int, int, str, dict[str, Any]]]] = {}
            for option in options:
                choice = reference.copy()
                choice[i] = option
                cost = closed_form_costs(self.spec.build(family, width, blocks, choice))
                grouped.setdefault(option_l(family, option, width * 2**i), []).append(
                    (cost.params, cost.macs, option_label(option), option))
            by_l = {l_value: tuple(entry[3] for entry in sorted(entries, key=lambda e: e[:3]))
                    for l_value, entries in grouped.items()}
            tables.append(StageTable(ls=tuple(sorted(by_l)), by_l=by_l))
        result = tuple(tables)
        self._tables[key] = result
        return result

    # -- decode / encode -------------------------------------------------------------------------------

    def locate(self, params: Mapping[str, Any]) -> Point:
        """Apply the repair rule: the (family, width, blocks, per-stage option) indices ``params`` decode to."""
        for name in self.gene_names:
            if name not in params:
                raise ValueError(f"gene {name!r} is missing (the genome's genes: {', '.join(self.gene_names)})")
        family = params[FAMILY]
        if family not in self.families:
            raise ValueError(f"gene 'family' must be one of {', '.join(self.families)}, got {family!r}")
        width_index = _as_int(WIDTH, params[WIDTH])
        if not 0 <= width_index < len(self.widths):
            raise ValueError(f"gene 'width' must be an index 0..{len(self.widths) - 1}, got {width_index}")
        blocks_index = _as_int(BLOCKS, params[BLOCKS])
        if not 0 <= blocks_index < len(self.blocks):
            raise ValueError(f"gene 'blocks' must be an index 0..{len(self.blocks) - 1}, got {blocks_index}")
        width_index = _nearest(self.valid_widths[family], width_index)
        tables = self.tables(family, self.widths[width_index])
        stages = []
        for i, table in enumerate(tables):
            l_name, pos_name = self.l_gene(i), self.pos_gene(i)
            l_value = _as_int(l_name, params[l_name])
            if not 1 <= l_value <= self.max_l_gene:
                raise ValueError(f"gene {l_name!r} must be an integer 1..{self.max_l_gene}, got {l_value}")
            try:
                pos = float(params[pos_name])
            except (TypeError, ValueError):
                raise ValueError(f"gene {pos_name!r} must be a number in [0, 1], got {params[pos_name]!r}") from None
            if not 0.0 <= pos <= 1.0:  # also refuses NaN
                raise ValueError(f"gene {pos_name!r} must be a number in [0, 1], got {params[pos_name]!r}")
            l_value = table.nearest_l(l_value)
            n = len(table.by_l[l_value])
            stages.append((l_value, min(math.floor(pos * n), n - 1), n))
        structure = []
        if self.structured:
            for i in range(self.num_stages):
                indices = []
                for name, values in ((self.sk_gene(i), STRUCTURED_KERNELS), (self.cr_gene(i), CHANNEL_REDUCTIONS)):
                    index = _as_int(name, params[name])
                    if not 0 <= index < len(values):
                        raise ValueError(f"gene {name!r} must be an index 0..{len(values) - 1}, got {index}")
                    indices.append(index)
                structure.append((indices[0], indices[1]))
        return Point(family, width_index, blocks_index, tuple(stages), tuple(structure))

    def build(self, point: Point) -> NetworkConfig:
        """The network of a located point."""
        width = self.widths[point.width_index]
        tables = self.tables(point.family, width)
        choices = [tables[i].by_l[l_value][index] for i, (l_value, index, _) in enumerate(point.stages)]
        if point.structure:  # index 0 adds no field, so plain stages are the configs they always were
            choices = [{**choice, **structure_fields(*indices)} for choice, indices in zip(choices, point.structure)]
        return self.spec.build(point.family, width, self.blocks[point.blocks_index], choices)

    def decode(self, params: Mapping[str, Any]) -> NetworkConfig:
        """The valid network the genes describe (repaired as documented in the module)."""
        return self.build(self.locate(params))

    def params_of(self, point: Point) -> dict[str, Any]:
        """Canonical genes of a point: L the decoded one, pos the centre of the option's interval, the
        structure indices as they are."""
        params: dict[str, Any] = {FAMILY: point.family, WIDTH: point.width_index, BLOCKS: point.blocks_index}
        for i, (l_value, index, n) in enumerate(point.stages):
            params[self.l_gene(i)] = l_value
            params[self.pos_gene(i)] = (index + 0.5) / n
            if point.structure:
                params[self.sk_gene(i)], params[self.cr_gene(i)] = point.structure[i]
        return params

    def canonical(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``encode(decode(params))`` without building: genes snapped to what they decode to, so that
        equal choices get equal genes."""
        return self.params_of(self.locate(params))

    def encode(self, config: NetworkConfig) -> dict[str, Any]:
        """The canonical genes of a network of the space; ValueError naming what lies outside it."""
        if config.family not in self.families:
            raise BadInput(f"family {config.family!r} is not searched (searched: {', '.join(self.families)})")
        if len(config.stages) != self.num_stages:
            raise BadInput(f"the space has {self.num_stages} stages, the network {len(config.stages)}")
        width = config.stem_width
        if width not in self.widths:
            raise BadInput(f"width {width} is not a searched width ({', '.join(map(str, self.widths))})")
        width_index = self.widths.index(width)
        if width_index not in self.valid_widths[config.family]:
            raise BadInput(f"{config.family} has no valid network at width {width}")
        blocks = config.stages[0].blocks
        if blocks not in self.blocks or any(s.blocks != blocks for s in config.stages):
            raise BadInput(f"blocks per stage must be one of {', '.join(map(str, self.blocks))} in every stage, "
                             f"got {[s.blocks for s in config.stages]}")
        tables = self.tables(config.family, width)
        stages = []
        for i, (stage, choice) in enumerate(zip(config.stages, choices_of(config))):
            stage_width = width * 2**i
            if stage.width != stage_width:
                raise BadInput(f"stage {i} has width {stage.width}; the template has {stage_width}")
            l_value = option_l(config.family, choice, stage_width)
            options = tables[i].by_l.get(l_value, ())
            if choice not in options:
                raise BadInput(f"stage {i} option {option_label(choice)} is not in the space at width {stage_width}")
            stages.append((l_value, options.index(choice), len(options)))
        structure = []
        for i, stage in enumerate(config.stages):
            indices = structure_indices(stage)
            if indices != (0, 0) and not self.structured:
                raise BadInput(f"stage {i} uses Structured Convolutions (small_kernel {stage.small_kernel}, "
                               f"channel_reduction {stage.channel_reduction}) but the space searches plain "
                               "networks only (SearchSpec.structured, --structured on)")
            structure.append(indices)
        point = Point(config.family, width_index, self.blocks.index(blocks), tuple(stages),
                      tuple(structure) if self.structured else ())
        if self.arch_id(point) != arch_id(config):
            raise BadInput("the network differs from the space's template (stem, strides, input shape, classes, "
                             "head or shortcut) and cannot be encoded")
        return self.params_of(point)

    # -- cached measures of a point ---------------------------------------------------------------------

    def arch_id(self, point: Point) -> str:
        value = self._arch.get(point)
        if value is None:
            value = self._arch[point] = arch_id(self.build(point))
        return value

    def costs(self, point: Point) -> tuple[int, int]:
        """Closed-form (params, MACs) of a point."""
        value = self._costs.get(point)
        if value is None:
            report = closed_form_costs(self.build(point))
            value = self._costs[point] = (report.params, report.macs)
        return value

    # -- moves (each returns new genes; decode repairs, so every result is valid) ------------------------

    def step_stage(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i to the option ``delta`` places away in cost order, same L (unchanged at an end)."""
        self._check_stage(i)
        point = self.locate(params)
        l_value, index, n = point.stages[i]
        out = dict(params)
        if 0 <= index + delta < n:
            out[self.l_gene(i)] = l_value
            out[self.pos_gene(i)] = (index + delta + 0.5) / n
        return out

    def step_l(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i to the ``delta``-th next L offered there, keeping its relative cost position."""
        self._check_stage(i)
        point = self.locate(params)
        ls = self.tables(point.family, self.widths[point.width_index])[i].ls
        k = ls.index(point.stages[i][0]) + delta
        out = dict(params)
        if 0 <= k < len(ls):
            out[self.l_gene(i)] = ls[k]
        return out

    def step_sk(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i's small kernel ``delta`` places along 3, 2, 1 (unchanged at an end); structured only."""
        return self._step_structure(params, i, delta, 0)

    def step_cr(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i's channel reduction ``delta`` places along 1, 2, 4 (unchanged at an end); structured
        only."""
        return self._step_structure(params, i, delta, 1)

    def _step_structure(self, params: Mapping[str, Any], i: int, delta: int, which: int) -> dict[str, Any]:
        self._check_stage(i)
        if not self.structured:
            raise ValueError("structure moves need a structured space (SearchSpec.structured)")
        point = self.locate(params)
        name, values = ((self.sk_gene(i), STRUCTURED_KERNELS), (self.cr_gene(i), CHANNEL_REDUCTIONS))[which]
        k = point.structure[i][which] + delta
        out = dict(params)
        if 0 <= k < len(values):
            out[name] = k
        return out

    def step_width(self, params: Mapping[str, Any], delta: int) -> dict[str, Any]:
        """Move to the ``delta``-th next width valid for the family; stage genes keep their relative meaning."""
        point = self.locate(params)
        valid = self.valid_widths[point.family]
        k = valid.index(point.width_index) + delta
        out = dict(params)
        if 0 <= k < len(valid):
            out[WIDTH] = valid[k]
        return out

    def step_blocks(self, params: Mapping[str, Any], delta: int) -> dict[str, Any]:
        """Move to the ``delta``-th next searched block count."""
        point = self.locate(params)
        out = dict(params)
        if 0 <= point.blocks_index + delta < len(self.blocks):
            out[BLOCKS] = point.blocks_index + delta
        return out

    def set_family(self, params: Mapping[str, Any], family: str) -> dict[str, Any]:
        """Change the family; width and stage genes are kept and repaired in the new family's tables."""
        if family not in self.families:
            raise ValueError(f"family must be one of {', '.join(self.families)}, got {family!r}")
        out = dict(params)
        out[FAMILY] = family
        return out

    def apply_op(self, params: Mapping[str, Any], op: str) -> dict[str, Any]:
        """Replay a move written as the sampler records it: ``step_stage(1,+1)``, ``step_l(0,-1)``,
        ``step_sk(2,+1)``, ``step_cr(0,-1)`` (structured), ``step_width(+1)``, ``step_blocks(-1)``,
        ``set_family(igcv1)``."""
        match = _OP.match(op.replace(" ", ""))
        if not match:
            raise ValueError(f"unknown move {op!r}")
        name, args = match.group(1), match.group(2).split(",")
        try:
            if name == "set_family":
                return self.set_family(params, args[0])
            numbers = [int(a) for a in args]
            if name in ("step_stage", "step_l", "step_sk", "step_cr"):
                i, delta = numbers
                return getattr(self, name)(params, i, delta)
            (delta,) = numbers
            return getattr(self, name)(params, delta)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad move {op!r}: {exc}") from None

    def move_sites(self) -> list[list[str]]:
        """The single-step moves grouped by the gene they change (both directions of one gene per group),
        family switches excluded: per stage its option, its L and, when structured, its small kernel and
        channel reduction; then width and blocks. A mutation draws per group."""
        names = ("step_stage", "step_l") + (("step_sk", "step_cr") if self.structured else ())
        sites = [[f"{name}({i},{d:+d})" for d in (-1, 1)] for i in range(self.num_stages) for name in names]
        return sites + [[f"step_width({d:+d})" for d in (-1, 1)], [f"step_blocks({d:+d})" for d in (-1, 1)]]

    def moves(self) -> list[str]:
        """Every single-step move (as :meth:`apply_op` reads them), family switches excluded."""
        return [op for site in self.move_sites() for op in site]

    def neighbours(self, params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The canonical genes one move away that decode to a different choice, with the move."""
        here = self.canonical(params)
        out = []
        for op in self.moves():
            there = self.canonical(self.apply_op(here, op))
            if there != here:
                out.append((op, there))
        return out

    def random_params(self, rng: random.Random) -> dict[str, Any]:
        """Canonical genes of a random network: family, a valid width, blocks, then per stage an offered L
        and an option of it, each uniformly (so every family and L is reached, unlike uniform genes whose
        repairs pile up on the ends); when structured, then per stage a small kernel and a reduction,
        uniformly (drawn last, so a seeded plain genome draws exactly what it always drew)."""
        family = rng.choice(self.families)
        width_index = rng.choice(self.valid_widths[family])
        stages = []
        for table in self.tables(family, self.widths[width_index]):
            l_value = rng.choice(table.ls)
            n = len(table.by_l[l_value])
            stages.append((l_value, rng.randrange(n), n))
        blocks_index = rng.randrange(len(self.blocks))
        structure = tuple((rng.randrange(len(STRUCTURED_KERNELS)), rng.randrange(len(CHANNEL_REDUCTIONS)))
                          for _ in range(self.num_stages)) if self.structured else ()
        return self.params_of(Point(family, width_index, blocks_index, tuple(stages), structure))

    def _check_stage(self, i: int) -> None:
        if not 0 <= i < self.num_stages:
            raise ValueError(f"stage must be 0..{self.num_stages - 1}, got {i}")


@functools.lru_cache(maxsize=64)
def genome_for(spec: SearchSpec) -> Genome:
    """One shared :class:`Genome` per spec (SearchSpec is frozen and hashable), caches included."""
    return Genome(spec)


# -- seed networks ------------------------------------------------------------------------------------


def seed_configs(spec: SearchSpec, *, max_seeds: int = 6) -> list[NetworkConfig]:
    """The balance-condition networks, to enqueue before sampling starts.

    For IGC-V2 at the middle, the largest and the smallest searched width (and the smallest block
    count), every stage takes its complementary factorisation closest to the balance condition
    (lowest excess of the 1x1 chain's params over their bound, then fewer convolutions); Xception
    at the same widths comes along as the paper's baseline. At most ``max_seeds`` networks.
    """
    from igcnas.search_space.conditions import check_balance

    seeds: list[NetworkConfig] = []
    blocks = min(spec.blocks)
    widths = sorted(spec.widths)
    cells = set(spec.cells())
    igcv2 = get_family("igcv2")
    for width in dict.fromkeys([widths[len(widths) // 2], widths[-1], widths[0]]):
        if "igcv2" in spec.families and ("igcv2", width) in cells:
            choices: list[dict[str, Any]] = []
            for i, options in enumerate(spec.stage_options("igcv2", width)):
                stage_width = width * 2**i

                def excess(option: dict[str, Any], stage_width: int = stage_width) -> tuple[float, int]:
                    structure = igcv2.structure(StageConfig(width=stage_width, blocks=1, **option))
                    return check_balance(structure, stage_width).pointwise_excess or 0.0, len(option["chain"])

                choices.append(min(options, key=excess))
            seeds.append(spec.build("igcv2", width, blocks, choices))
        if "xception" in spec.families and ("xception", width) in cells:
            seeds.append(spec.build("xception", width, blocks, [{} for _ in range(spec.num_stages)]))
    return seeds[:max_seeds]


def zoo_seed_configs(spec: SearchSpec) -> list[NetworkConfig]:
    """The paper's zoo networks carried into the search template, to enqueue.

    A zoo network's per-stage structure (IGC-V1's partitions, IGC-V2's K's, ...) is kept and placed
    at the searched width nearest to its own (in log scale; ties: the smaller) where every stage's
    structure is an option of the space; the depth becomes the smallest searched block count.
    Networks whose structure fits no searched width (IGC-V2 C64's K = 8x8 needs 64 channels) are
    left out rather than altered.
    """
    from igcnas.search_space.zoo import ZOO

    out: list[NetworkConfig] = []
    blocks = min(spec.blocks)
    cells = set(spec.cells())
    for entry in ZOO.values():
        config = entry.config
        if config.family not in spec.families or len(config.stages) != spec.num_stages:
            continue
        choices = choices_of(config)
        own = config.stages[0].width
        for width in sorted(spec.widths, key=lambda w: (abs(math.log(w / own)), w)):
            if (config.family, width) not in cells:
                continue
            per_stage = spec.stage_options(config.family, width)
            if any(choice not in options for choice, options in zip(choices, per_stage, strict=True)):
                continue
            network = spec.build(config.family, width, blocks, choices)
            if network not in out:
                out.append(network)
            break
    return out
