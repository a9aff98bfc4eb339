"""What a search covers: one frozen description of the design space (pure Python, no torch).

A network of the space is a stage template (``num_stages`` stages of widths
``w, 2w, 4w, ...``, ``blocks`` blocks each) of one block family with one
option per stage, where a stage's options are the ones the complementary
condition allows at that width (:func:`~igcnas.search_space.enumerate.template_options`).
:class:`SearchSpec` is used by everything that needs the space: counting and
enumeration (:class:`~igcnas.search_space.design_space.DesignSpace`), the gene
encoding of the search (:mod:`igcnas.search_space.genome`), the seed networks
(:mod:`igcnas.search_space.seeds`), the cost bounds of a budget, and the
tabular benchmark.

With ``structured`` every stage also chooses a Structured Convolution
(:data:`STRUCTURED_KERNELS` x :data:`CHANNEL_REDUCTIONS`, see
:func:`structure_fields`): a dimension orthogonal to the family's options, since
every combination is valid for every convolution.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

from igcnas.search_space.config import SMALL_KERNELS, NetworkConfig, StageConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import template_network, template_options
from igcnas.search_space.families import FAMILIES, get_family
from igcnas.errors import BadInput

__all__ = ["SearchSpec", "DEFAULT_FAMILIES", "DEFAULT_BLOCKS", "DEFAULT_MAX_L", "default_widths", "option_label",
           "choices_of", "SpaceBounds", "space_bounds", "STRUCTURED_KERNELS", "CHANNEL_REDUCTIONS",
           "structure_fields", "structure_indices"]

DEFAULT_FAMILIES: tuple[str, ...] = tuple(FAMILIES)
DEFAULT_BLOCKS: tuple[int, ...] = (1, 2)
DEFAULT_MAX_L = 4
# First-stage widths searched by default: small images (digits' 8x8) get narrower networks.
_SMALL_IMAGE_WIDTHS = (8, 16, 24, 32, 48)
_LARGE_IMAGE_WIDTHS = (16, 24, 32, 48, 64)
# The Structured Convolutions a structured search offers per stage, in ascending cheapness so that index 0
# is the plain convolution (what a gene index of 0 means): small kernels n x n, and input-channel reductions.
STRUCTURED_KERNELS: tuple[int, ...] = SMALL_KERNELS
CHANNEL_REDUCTIONS: tuple[int, ...] = (1, 2, 4)


def default_widths(input_size: int) -> tuple[int, ...]:
    """The first-stage widths searched when none are given, for images of ``input_size`` pixels."""
    return _SMALL_IMAGE_WIDTHS if input_size <= 16 else _LARGE_IMAGE_WIDTHS


def default_stem_stride(input_size: int) -> int:
    """Large images (Tiny ImageNet's 64x64) start with a stride-2 stem."""
    return 2 if input_size >= 64 else 1


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """The families, widths, depths and L searched, and the data shape the networks are built for.

    ``structured``: also search a Structured Convolution per stage (off: only plain networks, exactly
    the space it was before the option existed).
    """

    families: tuple[str, ...] = DEFAULT_FAMILIES
    widths: tuple[int, ...] = _SMALL_IMAGE_WIDTHS
    blocks: tuple[int, ...] = DEFAULT_BLOCKS
    num_stages: int = 3
    max_l: int = DEFAULT_MAX_L
    in_channels: int = 3
    input_size: int = 32
    num_classes: int = 10
    stem_stride: int = 1
    structured: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.structured, bool):
            raise BadInput(f"structured must be true or false, got {self.structured!r}")
        for name in ("families", "widths", "blocks"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise BadInput(f"{name} must not be empty")
        for family in self.families:
            get_family(family)
        if len(set(self.families)) != len(self.families):
            raise BadInput(f"families must not repeat, got {list(self.families)}")
        for w in self.widths:
            if not isinstance(w, int) or w < 2:
                raise BadInput(f"widths must be integers >= 2, got {w!r}")
        for b in self.blocks:
            if not isinstance(b, int) or b < 1:
                raise BadInput(f"blocks must be integers >= 1, got {b!r}")
        for name, value, low in (("num_stages", self.num_stages, 1), ("max_l", self.max_l, 2),
                                 ("num_classes", self.num_classes, 2), ("in_channels", self.in_channels, 1),
                                 ("input_size", self.input_size, 1)):
            if not isinstance(value, int) or value < low:
                raise BadInput(f"{name} must be an integer >= {low}, got {value!r}")

    @classmethod
    def for_data(cls, *, in_channels: int, input_size: int, num_classes: int, families: tuple[str, ...] | None = None,
                 widths: tuple[int, ...] | None = None, blocks: tuple[int, ...] | None = None,
                 max_l: int = DEFAULT_MAX_L, structured: bool = False) -> SearchSpec:
        """The default space for a data set's image shape, with any of the ranges overridden."""
        return cls(families=families or DEFAULT_FAMILIES, widths=widths or default_widths(input_size),
                   blocks=blocks or DEFAULT_BLOCKS, max_l=max_l, in_channels=in_channels, input_size=input_size,
                   num_classes=num_classes, stem_stride=default_stem_stride(input_size), structured=structured)

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def stage_options(self, family: str, width: int) -> list[list[dict[str, Any]]]:
        """Per stage, the options the complementary condition allows (stage i has ``width * 2**i`` channels)."""
        return _cached_options(family, width, self.num_stages, self.max_l)

    def build(self, family: str, width: int, blocks: int, choices: list[dict[str, Any]]) -> NetworkConfig:
        return template_network(family, width, blocks, choices, num_classes=self.num_classes,
                                input_size=self.input_size, in_channels=self.in_channels,
                                stem_stride=self.stem_stride)

    def cells(self) -> list[tuple[str, int]]:
        """(family, width) pairs with at least one valid network."""
        return list(_cached_cells(self.families, self.widths, self.num_stages, self.max_l))


# Enumerating a stage's valid options resolves every candidate's plan (milliseconds); a search asks
# for the same few (family, width) cells on every trial, so they are computed once per process.
@functools.lru_cache(maxsize=4096)
def _cached_options(family: str, width: int, num_stages: int, max_l: int) -> list[list[dict[str, Any]]]:
    return template_options(family, width, num_stages=num_stages, max_l=max_l)


@functools.lru_cache(maxsize=256)
def _cached_cells(families: tuple[str, ...], widths: tuple[int, ...], num_stages: int, max_l: int
                  ) -> tuple[tuple[str, int], ...]:
    return tuple((f, w) for f in families for w in widths if all(_cached_options(f, w, num_stages, max_l)))


def option_label(option: dict[str, Any]) -> str:
    """A stable string for a stage option (``chain=8x8``, ``k1=2``, ``-`` for none)."""
    if not option:
        return "-"
    parts = []
    for key, value in option.items():
        text = "x".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        parts.append(f"{key}={text}")
    return ",".join(parts)


def structure_fields(kernel_index: int, reduction_index: int) -> dict[str, int]:
    """The StageConfig fields of a stage's structure indices; index 0 leaves its field out (None), so
    a plain stage is the very config it was without the option."""
    fields: dict[str, int] = {}
    if kernel_index:
        fields["small_kernel"] = STRUCTURED_KERNELS[kernel_index]
    if reduction_index:
        fields["channel_reduction"] = CHANNEL_REDUCTIONS[reduction_index]
    return fields


def structure_indices(stage: StageConfig) -> tuple[int, int]:
    """A stage's (small kernel, channel reduction) indices; BadInput when a value is not searched."""
    kernel = stage.small_kernel if stage.small_kernel is not None else STRUCTURED_KERNELS[0]
    reduction = stage.channel_reduction if stage.channel_reduction is not None else CHANNEL_REDUCTIONS[0]
    if kernel not in STRUCTURED_KERNELS:
        raise BadInput(f"small_kernel {kernel} is not searched ({', '.join(map(str, STRUCTURED_KERNELS))})")
    if reduction not in CHANNEL_REDUCTIONS:
        raise BadInput(f"channel_reduction {reduction} is not searched "
                       f"({', '.join(map(str, CHANNEL_REDUCTIONS))})")
    return STRUCTURED_KERNELS.index(kernel), CHANNEL_REDUCTIONS.index(reduction)


def choices_of(config: NetworkConfig) -> list[dict[str, Any]]:
    """The per-stage options (family parameters that are set) of a configuration."""
    fields = get_family(config.family).params
    return [{k: getattr(stage, k) for k in fields if getattr(stage, k) is not None} for stage in config.stages]


@dataclass(frozen=True)
class SpaceBounds:
    min_params: int
    min_macs: int
    max_params: int
    max_macs: int


def space_bounds(spec: SearchSpec) -> SpaceBounds:
    """Exact minimum and maximum params and MACs over the whole space.

    Stage costs are additive and each stage's options are independent of the
    others (the input width of a stage is fixed by the template), so the
    extreme network of a (family, width, blocks) cell takes the extreme option
    in every stage; each option's rank is read off a network that differs
    from a reference in that stage only. In a structured space a stage's
    candidates are its options plain and in the cheapest structure: a
    deployed structured conv has ``c_out * ceil(c_g / r) * n * n`` weights and
    as many MACs per output pixel, which only shrink with a smaller kernel n
    and a larger reduction r, so the other structures lie between the two.
    """
    structures = [{}]
    if spec.structured:
        structures.append(structure_fields(len(STRUCTURED_KERNELS) - 1, len(CHANNEL_REDUCTIONS) - 1))
    best: dict[str, int] = {}
    for (family, width), blocks in itertools.product(spec.cells(), spec.blocks):
        per_stage = [[{**option, **structure} for option in options for structure in structures]
                     for options in spec.stage_options(family, width)]
        reference = [candidates[0] for candidates in per_stage]
        # (params, macs) of each stage candidate in the reference network, computed once for all four extremes
        scored = []
        for i, candidates in enumerate(per_stage):
            row = []
            for candidate in candidates:
                trial_choice = reference.copy()
                trial_choice[i] = candidate
                cost = closed_form_costs(spec.build(family, width, blocks, trial_choice))
                row.append({"params": cost.params, "macs": cost.macs})
            scored.append(row)
        for metric, sign in (("params", 1), ("macs", 1), ("params", -1), ("macs", -1)):
            chosen = [candidates[min(range(len(candidates)), key=lambda j, row=row: (sign * row[j][metric], j))]
                      for candidates, row in zip(per_stage, scored)]
            value = getattr(closed_form_costs(spec.build(family, width, blocks, chosen)), metric)
            key = f"{'min' if sign > 0 else 'max'}_{metric}"
            if key not in best or sign * value < sign * best[key]:
                best[key] = value
    return SpaceBounds(min_params=best["min_params"], min_macs=best["min_macs"], max_params=best["max_params"],
                       max_macs=best["max_macs"])
