"""Resolve a :class:`NetworkConfig` into concrete layer shapes (pure Python).

The plan is the single description of what a network computes: the PyTorch
builders in :mod:`igcnas.models` instantiate exactly these layers and the
closed-form costs in :mod:`igcnas.search_space.costs` sum over them. fvcore
then measures the built module independently, which is what the tests compare.

Choices the IGC-V2 paper leaves open, made here so that its tables are
reproduced (see ``igc-nas zoo``):

* **Stem**: 3x3 convolution ``in_channels -> stem_width`` + BN + ReLU
  (stride ``stem_stride``; 2 for 64x64 Tiny ImageNet and for ImageNet).
* **Interleaved block**: spatial 3x3 group conv -> BN -> group 1x1 chain with
  channel permutations between the convolutions and no non-linearity inside
  the chain (so the chain is one structured-sparse factorisation of a dense
  1x1 kernel) -> BN -> ReLU. A dense block is conv -> BN -> ReLU.
* **Stage transition** (first block of a stage, stride 2 and/or a width
  change ``c_in -> c_out``) with ``transition="expand"``: when ``c_out`` is a multiple of ``c_in`` the
  spatial conv expands the channels (each group keeps its ``k1`` inputs and
  produces ``k1 * c_out / c_in`` outputs, as a channel multiplier), so the
  block costs what a block of the new stage costs, as the paper's Table 1
  lists it. Otherwise (for example a 35-channel stem before a 58-wide
  stage) the spatial conv keeps ``c_in`` channels and the first 1x1
  convolution maps ``c_in -> c_out``. With ``transition="input_width"`` (the
  default) the spatial conv always runs at ``c_in`` (stride 2) and the first
  1x1 convolution widens; a widening group convolution keeps the stage's
  number of groups where that divides the input width (else ``k`` channels
  per input group). With ``transition="first_able"`` (the zoo's convention,
  which reproduces the paper's tables) the first convolution able to change
  the width does so: the spatial conv when it has more than one input channel
  per group (IGC-V1's primary group conv, Deep Roots, a dense conv), keeping
  the stage's number of groups, else the first 1x1 (Xception, IGC-V2).
* **Residuals**: interleaved families add a skip every two blocks (Table 1);
  a skip across a shape change is parameter-free by default (stride-2
  subsampling and zero channel padding, ResNet's option A) or, with
  ``shortcut="projection"``, a 1x1 conv (``shortcut_groups`` groups, reduced
  to the gcd with both widths) with the unit's stride + BN; in that mode a
  unit that only widens at stride 1 (after a stem narrower than the first
  stage) has no skip, as the paper's Table 3 networks count it. IGC-V3 blocks carry their
  own identity residual when stride is 1 and widths match (MobileNetV2 rule).
* **Permutation** between two group convolutions: the channel shuffle whose
  group count is the number of groups of the convolution before it (a
  view/transpose, never a gather). For the complementary factorisations
  enumerated here this gives exactly one path between every input and every
  output channel (checked in :mod:`igcnas.search_space.conditions`).
* **Head**: optional 1x1 conv to ``head_width`` + BN (IGC-V3), global average
  pooling, fully connected classifier with bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.families import Interleaved, Inverted, get_family
from igcnas.errors import BadInput

__all__ = ["ConvOp", "InterleavedPlan", "InvertedPlan", "ShortcutPlan", "UnitPlan", "NetworkPlan", "resolve",
           "resolve_interleaved", "resolve_inverted", "conv_out_size", "structured_op"]


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Output size of a convolution with 'same' padding ``kernel // 2``."""
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


@dataclass(frozen=True)
class ConvOp:
    """One convolution (no bias) with its input and output spatial size.

    ``small = (c_g, n)`` makes it a Structured Convolution: its kernel is a ``c_g x n x n`` kernel
    spread by a box of ones, deployed as a sum-pool (window ``(C_g - c_g + 1) x (k - n + 1)^2``,
    stride 1, after the layer's padding) followed by the small kernel at the layer's stride.
    ``params`` and ``macs`` count the deployed form (what runs after decomposition); the training
    form's full kernel is ``train_params`` and the pooling's additions ``pool_adds``.
    """

    c_in: int
    c_out: int
    kernel: int
    stride: int
    groups: int
    size_in: int
    size_out: int
    small: tuple[int, int] | None = None

    @property
    def per_group(self) -> int:
        """C_g: input channels per group."""
        return self.c_in // self.groups

    @property
    def train_params(self) -> int:
        return self.c_out * self.per_group * self.kernel * self.kernel

    @property
    def params(self) -> int:
        if self.small is None:
            return self.train_params
        c_g, n = self.small
        return self.c_out * c_g * n * n

    @property
    def macs(self) -> int:
        return self.params * self.size_out * self.size_out

    @property
    def pool_window(self) -> tuple[int, int]:
        """(channel window, spatial window) of the sum-pool; (1, 1) when plain."""
        if self.small is None:
            return 1, 1
        c_g, n = self.small
        return self.per_group - c_g + 1, self.kernel - n + 1

    @property
    def pool_adds(self) -> int:
        """Additions of the sum-pool at batch 1 (window volume - 1 per pooled element; 0 when plain)."""
        wc, ws = self.pool_window
        if wc * ws * ws == 1 or self.small is None:
            return 0
        pooled = self.size_in + 2 * (self.kernel // 2) - ws + 1
        return self.groups * self.small[0] * pooled * pooled * (wc * ws * ws - 1)


def structured_op(op: ConvOp, small_kernel: int | None, channel_reduction: int | None) -> ConvOp:
    """``op`` as a Structured Convolution of the stage's option (unchanged when that is trivial)."""
    n = min(small_kernel or op.kernel, op.kernel)
    c_g = -(-op.per_group // (channel_reduction or 1))  # ceil: any reduction is valid, dividing or not
    if (c_g, n) == (op.per_group, op.kernel):
        return op
    return replace(op, small=(c_g, n))


@dataclass(frozen=True)
class InterleavedPlan:
    """Spatial conv, then the pointwise chain; ``shuffles[i]`` precedes ``pointwise[i]`` (1 = none)."""

    c_in: int
    c_out: int
    stride: int
    spatial: ConvOp
    pointwise: tuple[ConvOp, ...]
    shuffles: tuple[int, ...]

    @property
    def convs(self) -> tuple[ConvOp, ...]:
        return (self.spatial, *self.pointwise)

    @property
    def bn_shapes(self) -> tuple[tuple[int, int], ...]:
        """(channels, spatial size) of each BatchNorm in the block, in order."""
        shapes = [(self.spatial.c_out, self.spatial.size_out)]
        if self.pointwise:
            shapes.append((self.c_out, self.spatial.size_out))
        return tuple(shapes)


@dataclass(frozen=True)
class InvertedPlan:
    """IGC-V3 block: optional expansion, channel-wise 3x3, projection; shuffles by ``groups``."""

    c_in: int
    c_out: int
    stride: int
    expand: ConvOp | None
    depthwise: ConvOp
    project: ConvOp
    groups: int
    residual: bool

    @property
    def convs(self) -> tuple[ConvOp, ...]:
        head = (self.expand,) if self.expand is not None else ()
        return (*head, self.depthwise, self.project)

    @property
    def bn_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple((conv.c_out, conv.size_out) for conv in self.convs)


BlockPlan = InterleavedPlan | InvertedPlan


@dataclass(frozen=True)
class ShortcutPlan:
    """Skip connection around a unit: identity, zero padding, or a 1x1 projection."""

    kind: str  # "identity", "zero_pad" or "projection"
    c_in: int
    c_out: int
    stride: int
    projection: ConvOp | None = None


@dataclass(frozen=True)
class UnitPlan:
    """Blocks summed with one skip connection (``shortcut=None``: no residual)."""

    blocks: tuple[BlockPlan, ...]
    shortcut: ShortcutPlan | None


@dataclass(frozen=True)
class NetworkPlan:
    config: NetworkConfig
    stem: ConvOp
    stages: tuple[tuple[UnitPlan, ...], ...]
    head: ConvOp | None
    final_channels: int
    final_size: int

    def blocks(self) -> list[BlockPlan]:
        return [block for stage in self.stages for unit in stage for block in unit.blocks]

    def convs(self) -> list[ConvOp]:
        """Every convolution in forward order (stem, blocks, projections, head)."""
        out = [self.stem]
        for stage in self.stages:
            for unit in stage:
                for block in unit.blocks:
                    out.extend(block.convs)
                if unit.shortcut is not None and unit.shortcut.projection is not None:
                    out.append(unit.shortcut.projection)
        if self.head is not None:
            out.append(self.head)
        return out

    def bn_shapes(self) -> list[tuple[int, int]]:
        shapes = [(self.stem.c_out, self.stem.size_out)]
        for stage in self.stages:
            for unit in stage:
                for block in unit.blocks:
                    shapes.extend(block.bn_shapes)
                if unit.shortcut is not None and unit.shortcut.projection is not None:
                    p = unit.shortcut.projection
                    shapes.append((p.c_out, p.size_out))
        if self.head is not None:
            shapes.append((self.head.c_out, self.head.size_out))
        return shapes


def _groups_for(channels: int, per_group: int, where: str) -> int:
    """Number of groups when each group takes ``per_group`` of ``channels`` inputs."""
    per_group = min(per_group, channels)
    if channels % per_group != 0:
        raise BadInput(f"{where}: {per_group} channels per group do not divide {channels} input channels")
    return channels // per_group


def resolve_interleaved(
    structure: Interleaved,
    *,
    c_in: int,
    c_out: int,
    stride: int,
    size: int,
    transition: str = "input_width",
    where: str = "block",
) -> InterleavedPlan:
    """Shapes of one interleaved block (see the module docstring for the transition rules)."""
    size_out = conv_out_size(size, 3, stride)
    grouped_spatial = structure.k1 > 1 and c_in != c_out
    expand = (not structure.chain or (transition == "expand" and c_out % c_in == 0)
              or (transition == "first_able" and grouped_spatial))
    c_mid = c_out if expand else c_in
    k1_in = min(structure.k1, c_in)
    stage_groups = c_out // structure.k1 if structure.k1 < c_out and c_out % structure.k1 == 0 else 0
    keep_groups = c_in % k1_in != 0 or (transition == "first_able" and grouped_spatial)
    if keep_groups and stage_groups and c_in % stage_groups == 0 and c_mid % stage_groups == 0:
        g_spatial = stage_groups  # width change where k1 does not divide the input: keep the stage's groups
    else:
        g_spatial = _groups_for(c_in, structure.k1, f"{where} spatial conv")
    if c_mid % g_spatial != 0:
        raise BadInput(f"{where} spatial conv: {g_spatial} groups do not divide {c_mid} output channels")
    spatial = ConvOp(c_in, c_mid, 3, stride, g_spatial, size, size_out)
    pointwise: list[ConvOp] = []
    shuffles: list[int] = []
    previous_groups, channels = g_spatial, c_mid
    for position, k in enumerate(structure.chain):
        label = f"{where} 1x1 conv {position + 2}"
        if channels == c_out:
            groups = _groups_for(channels, k, label)
        else:
            # Width change: keep the stage's number of branches (K_l channels per output branch)
            # when it divides the input width, else K_l channels per input branch.
            groups = _groups_for(c_out, k, label)
            if channels % groups != 0:
                groups = _groups_for(channels, k, label)
        if c_out % groups != 0 or channels % groups != 0:
            raise BadInput(f"{label}: {groups} groups do not divide {channels} -> {c_out} channels")
        # Interleave the previous convolution's groups unless that is the identity or pointless.
        useful = groups > 1 and 1 < previous_groups < channels
        shuffles.append(previous_groups if useful else 1)
        pointwise.append(ConvOp(channels, c_out, 1, 1, groups, size_out, size_out))
        previous_groups, channels = groups, c_out
    return InterleavedPlan(c_in, c_out, stride, spatial, tuple(pointwise), tuple(shuffles))


def resolve_inverted(
    structure: Inverted, *, c_in: int, c_out: int, stride: int, size: int, where: str = "block"
) -> InvertedPlan:
    size_out = conv_out_size(size, 3, stride)
    g = structure.groups
    hidden = c_in * structure.expansion
    for name, channels in (("input", c_in), ("expanded", hidden), ("output", c_out)):
        if channels % g != 0:
            raise BadInput(f"{where}: groups={g} does not divide the {name} width {channels}")
    expand = None
    if structure.expansion != 1:
        expand = ConvOp(c_in, hidden, 1, 1, g, size, size)
    depthwise = ConvOp(hidden, hidden, 3, stride, hidden, size, size_out)
    project = ConvOp(hidden, c_out, 1, 1, g, size_out, size_out)
    residual = stride == 1 and c_in == c_out
    return InvertedPlan(c_in, c_out, stride, expand, depthwise, project, g, residual)


def _structured_block(plan: BlockPlan, small_kernel: int | None, channel_reduction: int | None) -> BlockPlan:
    """Every convolution of a block as a Structured Convolution (stem, shortcuts and head stay plain)."""
    def op(c: ConvOp) -> ConvOp:
        return structured_op(c, small_kernel, channel_reduction)

    if isinstance(plan, InterleavedPlan):
        return replace(plan, spatial=op(plan.spatial), pointwise=tuple(op(p) for p in plan.pointwise))
    return replace(plan, expand=op(plan.expand) if plan.expand is not None else None,
                   depthwise=op(plan.depthwise), project=op(plan.project))


def _shortcut(config: NetworkConfig, c_in: int, c_out: int, stride: int, size: int) -> ShortcutPlan | None:
    if c_in == c_out and stride == 1:
        return ShortcutPlan("identity", c_in, c_out, stride)
    if config.shortcut == "projection":
        if stride == 1:
            return None  # a unit that only widens after the stem: no skip (the paper's Table 3 count)
        groups = math.gcd(config.shortcut_groups, c_in, c_out)
        proj = ConvOp(c_in, c_out, 1, stride, groups, size, conv_out_size(size, 1, stride))
        return ShortcutPlan("projection", c_in, c_out, stride, proj)
    if c_out < c_in:
        raise BadInput("shortcut 'zero_pad' cannot reduce the width; use shortcut='projection'")
    return ShortcutPlan("zero_pad", c_in, c_out, stride)


@lru_cache(maxsize=4096)
def resolve(config: NetworkConfig) -> NetworkPlan:
    """The full layer plan of ``config``; BadInput (a ValueError) names the first family parameter, then the
    first layer shape, that does not fit. This is where a network is validated: a NetworkConfig checks its
    fields one by one only (this module builds on it), and reading user input calls this (``config_io``)."""
    family = get_family(config.family)
    # Every stage's parameters before any shape, so the first error names what the user wrote.
    structures = [family.structure(stage, index) for index, stage in enumerate(config.stages)]
    size = config.input_size
    stem = ConvOp(config.in_channels, config.stem_width, 3, config.stem_stride, 1, size,
                  conv_out_size(size, 3, config.stem_stride))
    size = stem.size_out
    channels = config.stem_width
    stages: list[tuple[UnitPlan, ...]] = []
    for index, (stage, structure) in enumerate(zip(config.stages, structures)):
        blocks: list[BlockPlan] = []
        block_inputs: list[tuple[int, int]] = []
        for b in range(stage.blocks):
            stride = stage.stride if b == 0 else 1
            where = f"stages[{index}] block {b}"
            block_inputs.append((channels, size))
            if isinstance(structure, Interleaved):
                plan: BlockPlan = resolve_interleaved(
                    structure, c_in=channels, c_out=stage.width, stride=stride, size=size,
                    transition=config.transition, where=where,
                )
                size = plan.spatial.size_out
            else:
                plan = resolve_inverted(structure, c_in=channels, c_out=stage.width, stride=stride, size=size,
                                        where=where)
                size = plan.depthwise.size_out
            if stage.structured:
                plan = _structured_block(plan, stage.small_kernel, stage.channel_reduction)
            blocks.append(plan)
            channels = stage.width
        units: list[UnitPlan] = []
        if family.kind == "inverted":
            units = [UnitPlan((block,), None) for block in blocks]
        else:
            for start in range(0, len(blocks), 2):
                pair = tuple(blocks[start:start + 2])
                if len(pair) < 2:
                    units.append(UnitPlan(pair, None))  # an odd last block has no skip
                    continue
                c_unit, s_unit = block_inputs[start]
                stride = pair[0].stride
                units.append(UnitPlan(pair, _shortcut(config, c_unit, stage.width, stride, s_unit)))
        stages.append(tuple(units))
    head = None
    if config.head_width is not None:
        head = ConvOp(channels, config.head_width, 1, 1, 1, size, size)
        channels = config.head_width
    return NetworkPlan(config, stem, tuple(stages), head, channels, size)
