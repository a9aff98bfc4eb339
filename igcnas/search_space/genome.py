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
import math
import random
from typing import Any, Mapping

from igcnas.errors import BadInput
from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.genes import (BLOCKS, FAMILY, INVERTED_L, WIDTH, GeneSpec, Point, StageTable, l_of_option,
                                       nearest, stage_tables)
from igcnas.search_space.moves import GeneMoves
from igcnas.search_space.spec import (CHANNEL_REDUCTIONS, STRUCTURED_KERNELS, SearchSpec, choices_of, option_label,
                                      structure_fields, structure_indices)

__all__ = ["Genome", "genome_for"]


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


class Genome(GeneMoves):
    """The fixed genes of a :class:`~igcnas.search_space.spec.SearchSpec`: decode and encode (the moves
    are :class:`~igcnas.search_space.moves.GeneMoves`, which reads this encoding).

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

    # -- stage genes (named by GeneNames) --------------------------------------------------------------

    def stage_genes(self, params: Mapping[str, Any], i: int) -> tuple[Any, Any]:
        """Stage i's ``(L, pos)`` genes as given."""
        return params[self.l_gene(i)], params[self.pos_gene(i)]

    # -- option tables ---------------------------------------------------------------------------------

    def tables(self, family: str, width: int) -> tuple[StageTable, ...]:
        """The cell's :func:`~igcnas.search_space.genes.stage_tables`, built on first use: a search decodes
        into the same few cells on every trial, and each table costs a network per option."""
        key = (family, width)
        cached = self._tables.get(key)
        if cached is None:
            cached = self._tables[key] = stage_tables(self.spec, family, width)
        return cached

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
        width_index = nearest(self.valid_widths[family], width_index)
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
            l_value = l_of_option(config.family, choice, stage_width)
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

    # -- random networks -------------------------------------------------------------------------------

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


@functools.lru_cache(maxsize=64)
def genome_for(spec: SearchSpec) -> Genome:
    """One shared :class:`Genome` per spec (SearchSpec is frozen and hashable), caches included."""
    return Genome(spec)
