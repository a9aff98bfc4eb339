"""Block families of the IGC design space, as pure data.

Every family maps its stage parameters to one of two canonical block
structures:

* :class:`Interleaved` - a spatial 3x3 group convolution with ``k1`` input
  channels per group, followed by a chain of group 1x1 convolutions with
  ``K_2, ..., K_L`` channels per branch and a channel permutation between
  consecutive group convolutions (``W = P_L W_L ... P_1 W_1``). Dense 3x3,
  Xception, Deep Roots, IGC-V1, IGC-V2 and IGC-V2* are all points of it:

  ==============  ===================  ====================
  family          k1 (spatial)         chain (pointwise)
  ==============  ===================  ====================
  dense           C (regular conv)     ()
  xception        1 (channel-wise)     (C,)  one dense 1x1
  deep_roots      g, 1 < g < C         (C,)
  igcv1           M, 1 < M < C         (C / M,)
  igcv2           k1 (default 1)       (K_2, ..., K_L)
  igcv2_star      1                    (K,) * (L* - 1)
  ==============  ===================  ====================

* :class:`Inverted` - the IGC-V3 inverted residual block: group 1x1
  expansion, permutation, channel-wise 3x3, group 1x1 projection,
  permutation.

Because the canonical structure, not the family name, defines identity, an
``igcv2`` block whose chain is ``(C,)`` (a single branch) is the same
architecture as an ``xception`` block, and ``igcv1`` with ``M = 1`` would be
too (which is why ``igcv1`` requires ``1 < M < C``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable
from igcnas.errors import BadInput

if TYPE_CHECKING:
    from igcnas.search_space.config import StageConfig

__all__ = [
    "Interleaved",
    "Inverted",
    "BlockStructure",
    "Family",
    "FAMILIES",
    "get_family",
    "family_names",
    "igcv2_star_l",
]


@dataclass(frozen=True)
class Interleaved:
    """Spatial group conv (``k1`` channels per group) then group 1x1 convs (``chain``)."""

    k1: int
    chain: tuple[int, ...]

    @property
    def num_convs(self) -> int:
        """L, the number of group convolutions in the block."""
        return 1 + len(self.chain)


@dataclass(frozen=True)
class Inverted:
    """IGC-V3 inverted residual block: expansion ratio and groups of the 1x1 convs."""

    expansion: int
    groups: int


BlockStructure = Interleaved | Inverted


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def igcv2_star_l(width: int, k: int = 8) -> int:
    """L* = ceil(log_K(width)) + 1 (Table 1 of the IGC-V2 paper), computed in integers."""
    if k < 2:
        raise BadInput(f"k must be an integer >= 2, got {k}")
    power, exponent = 1, 0
    while power < width:
        power *= k
        exponent += 1
    return exponent + 1


def _only(stage: StageConfig, index: int, family: str, allowed: tuple[str, ...]) -> None:
    for name in ("k1", "chain", "k", "l", "expansion", "groups"):
        if name not in allowed and getattr(stage, name) is not None:
            allowed_text = ", ".join(allowed) if allowed else "none"
            raise BadInput(
                f"stages[{index}].{name} is not a parameter of family {family!r} (its parameters: {allowed_text})"
            )


def _require_int(stage: StageConfig, index: int, name: str, family: str) -> int:
    value = getattr(stage, name)
    if value is None:
        raise BadInput(f"stages[{index}].{name} is required by family {family!r}")
    return int(value)


def _require_chain(stage: StageConfig, index: int, family: str) -> tuple[int, ...]:
    if stage.chain is None:
        raise BadInput(f"stages[{index}].chain is required by family {family!r}")
    return tuple(stage.chain)


def _must_divide(what: str, value: int, width: int, index: int) -> None:
    if width % value != 0:
        choices = ", ".join(str(d) for d in _divisors(width))
        raise BadInput(
            f"stages[{index}].{what}={value} does not divide the stage width {width}; allowed values: {choices}"
        )


@dataclass(frozen=True)
class Family:
    """A registered block family: its parameters, validation and canonical structure."""

    name: str
    kind: str  # "interleaved" or "inverted"
    params: tuple[str, ...]
    description: str
    _structure: Callable[[StageConfig, int], BlockStructure]
    # The non-linearity of the whole network (stem, blocks, head): IGC-V3 follows MobileNetV2's ReLU6.
    activation: str = "relu"

    def structure(self, stage: StageConfig, index: int = 0) -> BlockStructure:
        """Canonical block structure of ``stage`` (validated)."""
        _only(stage, index, self.name, self.params)
        return self._structure(stage, index)


def _dense(stage: StageConfig, index: int) -> BlockStructure:
    return Interleaved(k1=stage.width, chain=())


def _xception(stage: StageConfig, index: int) -> BlockStructure:
    return Interleaved(k1=1, chain=(stage.width,))


def _deep_roots(stage: StageConfig, index: int) -> BlockStructure:
    g = _require_int(stage, index, "k1", "deep_roots")
    _must_divide("k1", g, stage.width, index)
    if not 1 < g < stage.width:
        raise BadInput(
            f"stages[{index}].k1 must satisfy 1 < k1 < width={stage.width} for deep_roots "
            "(k1 = 1 is xception, k1 = width a regular conv)"
        )
    return Interleaved(k1=g, chain=(stage.width,))


def _igcv1(stage: StageConfig, index: int) -> BlockStructure:
    m = _require_int(stage, index, "k1", "igcv1")
    _must_divide("k1", m, stage.width, index)
    if not 1 < m < stage.width:
        raise BadInput(
            f"stages[{index}].k1 (M, channels per primary partition) must satisfy 1 < M < width={stage.width}"
        )
    return Interleaved(k1=m, chain=(stage.width // m,))


def _igcv2(stage: StageConfig, index: int) -> BlockStructure:
    chain = _require_chain(stage, index, "igcv2")
    k1 = 1 if stage.k1 is None else stage.k1
    _must_divide("k1", k1, stage.width, index)
    for position, k in enumerate(chain):
        if k < 2:
            raise BadInput(f"stages[{index}].chain[{position}]={k}: channels per branch must be >= 2")
        if k > stage.width:
            raise BadInput(
                f"stages[{index}].chain[{position}]={k} exceeds the stage width {stage.width}"
            )
        _must_divide(f"chain[{position}]", k, stage.width, index)
    return Interleaved(k1=k1, chain=tuple(chain))


def _igcv2_star(stage: StageConfig, index: int) -> BlockStructure:
    k = _require_int(stage, index, "k", "igcv2_star")
    l_value = _require_int(stage, index, "l", "igcv2_star")
    if k < 2:
        raise BadInput(f"stages[{index}].k must be >= 2, got {k}")
    _must_divide("k", k, stage.width, index)
    return Interleaved(k1=1, chain=(k,) * (l_value - 1))


def _igcv3(stage: StageConfig, index: int) -> BlockStructure:
    t = _require_int(stage, index, "expansion", "igcv3")
    g = _require_int(stage, index, "groups", "igcv3")
    _must_divide("groups", g, stage.width, index)
    return Inverted(expansion=t, groups=g)


FAMILIES: dict[str, Family] = {}


def _register(family: Family) -> None:
    if family.name in FAMILIES:
        raise BadInput(f"family {family.name!r} is registered twice")
    FAMILIES[family.name] = family


_register(Family("dense", "interleaved", (),
                 "regular 3x3 convolution, the ResNet-style baseline (L = 1); two of them with a skip make a "
                 "ResNet basic block", _dense))
_register(Family("xception", "interleaved", (),
                 "channel-wise 3x3 + dense 1x1 (depthwise separable); the composed kernel is dense with one "
                 "path per channel pair", _xception))
_register(Family("deep_roots", "interleaved", ("k1",),
                 "group 3x3 (k1 channels per group) + dense 1x1 (Ioannou et al.); the composed kernel is dense "
                 "with k1 paths per channel pair: denser than complementary, more parameters", _deep_roots))
_register(
    Family(
        "igcv1",
        "interleaved",
        ("k1",),
        "interleaved group convolution, L = 2: primary group 3x3 (M = k1 channels per partition) + secondary "
        "group 1x1 (M branches); the permutation between them sends the channels of one primary partition to "
        "different secondary branches, so the pair is complementary (one path)",
        _igcv1,
    )
)
_register(
    Family(
        "igcv2",
        "interleaved",
        ("k1", "chain"),
        "interleaved structured sparse convolution (IGC-V2): channel-wise (or k1-group) 3x3 + L-1 group 1x1 "
        "convs with permutations, chain = (K_2..K_L) channels per branch, free per stage",
        _igcv2,
    )
)
_register(
    Family(
        "igcv2_star",
        "interleaved",
        ("k", "l"),
        "IGC-V2 with a fixed branch size K (8 in the paper): channel-wise 3x3 + L*-1 group 1x1 convs of K "
        "channels, L* = ceil(log_K C) + 1; K^(L*-1) >= C, so the composed kernel is dense, with several paths "
        "when K^(L*-1) > C",
        _igcv2_star,
    )
)
_register(
    Family(
        "igcv3",
        "inverted",
        ("expansion", "groups"),
        "inverted residual: group 1x1 expand, permute, channel-wise 3x3, group 1x1 project, permute",
        _igcv3,
        activation="relu6",
    )
)


def family_names() -> tuple[str, ...]:
    return tuple(FAMILIES)


def get_family(name: object) -> Family:
    if not isinstance(name, str) or name not in FAMILIES:
        raise BadInput(f"family must be one of {', '.join(FAMILIES)}, got {name!r}")
    return FAMILIES[name]
