"""Frozen configuration dataclasses for IGC-family networks.

A network is a stem convolution, a sequence of stages and a classifier. Every
stage has a width, a number of blocks, a stride (applied by its first block)
and the parameters of the block family that fills it. The fields a family
does not use must stay ``None``; the family decides which are required (see
:mod:`igcnas.search_space.families`).

Construction checks each field on its own (types, ranges, the allowed words) and
raises :class:`~igcnas.errors.BadInput` (a :class:`ValueError`) whose message names
the offending field and the allowed values, so that the CLI can print it as a
one-line error. Whether the fields fit together -- the family's parameters, and
every layer shape across the stage transitions -- is the plan's to say: it is
checked where the plan is built (:func:`igcnas.search_space.plan.resolve`), which
reading a configuration from user input calls
(:func:`igcnas.search_space.config_io.config_from_dict`). So a config is a plain
value: building or ``replace()``-ing one never resolves a network, and this module
imports neither the families nor the plan (both import it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from igcnas.errors import BadInput

__all__ = ["StageConfig", "NetworkConfig"]

SHORTCUTS = ("zero_pad", "projection")
TRANSITIONS = ("input_width", "expand", "first_able")
# Spatial sizes n of the small kernel a structured 3x3 convolution is built from (3: plain).
SMALL_KERNELS = (3, 2, 1)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise BadInput(f"{name} must be an integer >= {minimum}, got {value}")


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One stage: ``blocks`` blocks of one family at ``width`` channels.

    Family parameters (``None`` where the family does not use them):

    * ``k1``: input channels per group of the spatial 3x3 convolution
      (``deep_roots`` group size, ``igcv1`` partition size M, ``igcv2``'s first
      kernel; 1 means channel-wise).
    * ``chain``: channels per branch ``(K_2, ..., K_L)`` of the group 1x1
      convolutions that follow the spatial one (``igcv2``).
    * ``k`` and ``l``: branch size and number of group convolutions L* of
      ``igcv2_star`` (``l - 1`` group 1x1 convolutions of ``k`` channels).
    * ``expansion`` and ``groups``: expansion ratio and number of groups of
      the 1x1 convolutions of an ``igcv3`` inverted residual block.
    """

    width: int
    blocks: int
    stride: int = 1
    k1: int | None = None
    chain: tuple[int, ...] | None = None
    k: int | None = None
    l: int | None = None  # noqa: E741 - the paper's name
    expansion: int | None = None
    groups: int | None = None
    # Structured Convolutions (any family): every convolution of the stage's blocks becomes a sum-pool
    # followed by a small kernel with ``small_kernel`` x ``small_kernel`` taps (3x3 layers only) and
    # ceil(C_g / channel_reduction) input channels per group (layers with C_g > 1). None: plain.
    small_kernel: int | None = None
    channel_reduction: int | None = None

    def __post_init__(self) -> None:
        _check_int("width", self.width, minimum=1)
        _check_int("blocks", self.blocks, minimum=1)
        if self.stride not in (1, 2):
            raise BadInput(f"stride must be one of 1, 2, got {self.stride!r}")
        if self.chain is not None:
            if isinstance(self.chain, list):
                object.__setattr__(self, "chain", tuple(self.chain))
            if not isinstance(self.chain, tuple) or not self.chain:
                raise BadInput(f"chain must be a non-empty list of integers >= 1, got {self.chain!r}")
            for value in self.chain:
                _check_int("chain entry", value, minimum=1)
        for name in ("k1", "k", "expansion", "groups"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, minimum=1)
        if self.l is not None:
            _check_int("l (L, the number of group convolutions)", self.l, minimum=2)
        if self.small_kernel is not None and self.small_kernel not in SMALL_KERNELS:
            raise BadInput(f"small_kernel must be one of {', '.join(map(str, SMALL_KERNELS))}, "
                           f"got {self.small_kernel!r}")
        if self.channel_reduction is not None:
            _check_int("channel_reduction", self.channel_reduction, minimum=1)

    @property
    def structured(self) -> bool:
        """Whether the stage's convolutions are Structured Convolutions (not the plain 3x3 / full C_g)."""
        return (self.small_kernel or 3) != 3 or (self.channel_reduction or 1) != 1


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """A whole network. ``name`` is a label and takes no part in identity."""

    family: str
    stages: tuple[StageConfig, ...]
    stem_width: int
    stem_stride: int = 1
    num_classes: int = 10
    input_size: int = 32
    in_channels: int = 3
    head_width: int | None = None
    shortcut: str = "zero_pad"
    # Groups of a projection shortcut's 1x1 conv (reduced to the gcd with both widths where needed).
    shortcut_groups: int = 1
    transition: str = "input_width"
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Each field on its own; the family and the shapes are checked by :func:`~igcnas.search_space.plan.resolve`."""
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.stages, tuple) or not self.stages:
            raise BadInput("stages must be a non-empty list of stage objects")
        for stage in self.stages:
            if not isinstance(stage, StageConfig):
                raise BadInput(f"stages must hold StageConfig objects, got {type(stage).__name__}")
        _check_int("stem_width", self.stem_width, minimum=1)
        if self.stem_stride not in (1, 2):
            raise BadInput(f"stem_stride must be one of 1, 2, got {self.stem_stride!r}")
        _check_int("num_classes", self.num_classes, minimum=2)
        _check_int("input_size", self.input_size, minimum=1)
        _check_int("in_channels", self.in_channels, minimum=1)
        if self.head_width is not None:
            _check_int("head_width", self.head_width, minimum=1)
        _check_int("shortcut_groups", self.shortcut_groups, minimum=1)
        if self.shortcut not in SHORTCUTS:
            raise BadInput(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {self.shortcut!r}")
        if self.transition not in TRANSITIONS:
            raise BadInput(f"transition must be one of {', '.join(TRANSITIONS)}, got {self.transition!r}")

    @property
    def structured(self) -> bool:
        """Whether any stage uses Structured Convolutions (then counts and exports are the deployed form)."""
        return any(stage.structured for stage in self.stages)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One input image as the network takes it: (channels, height, width)."""
        return (self.in_channels, self.input_size, self.input_size)

    @property
    def depth(self) -> int:
        """Weighted layers as the paper counts them: stem + blocks + classifier (3B + 2)."""
        return sum(s.blocks for s in self.stages) + 2

    def replace(self, **changes: Any) -> NetworkConfig:
        """A copy with ``changes``, each field checked again; like construction it resolves nothing."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return NetworkConfig(**data)
