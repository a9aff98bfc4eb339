"""Named reference networks: every network of the IGC-V2 paper's Tables 2-6, and IGC-V3.

Each entry is a :class:`NetworkConfig` plus the figures the paper prints for it,
so that ``igc-nas zoo`` can show the ratio between our exact counts and the
paper's. The paper's "FLOPs" are multiply-accumulates; they are stored as MACs.

Naming: ``<family>_c<first-stage width>_d<depth>``; ``_flat`` marks the 8-layer
networks of Tables 2 and 5 (one 32x32 stage of 6 blocks, no down-sampling),
whose printed figures are per block.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import igcv2_star_l

__all__ = ["PaperFigures", "ZooEntry", "ZOO", "get_zoo_entry", "paper_ratios", "cifar_network", "register_zoo"]


@dataclass(frozen=True)
class PaperFigures:
    """What the paper prints. ``scope`` is "network" or "block" (Tables 2 and 5 count one block)."""

    table: str
    params: float | None  # number of parameters
    macs: float | None  # the paper's "FLOPs" (multiply-accumulates)
    scope: str = "network"
    tolerance: float = 0.01
    params_field: str = "conv_params"  # which of our counts the paper's #params corresponds to
    macs_tolerance: float | None = None  # defaults to ``tolerance``

    def within(self, params_ratio: float | None, macs_ratio: float | None) -> bool:
        """Whether our counts are within the tolerance of the printed figures."""
        macs_tol = self.tolerance if self.macs_tolerance is None else self.macs_tolerance
        ok = params_ratio is None or abs(params_ratio - 1.0) <= self.tolerance
        return ok and (macs_ratio is None or abs(macs_ratio - 1.0) <= macs_tol)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    config: NetworkConfig
    paper: tuple[PaperFigures, ...] = ()
    note: str = ""


ZOO: dict[str, ZooEntry] = {}


def register_zoo(entry: ZooEntry) -> ZooEntry:
    """Add a zoo entry; a duplicate name is an error (names are the public API)."""
    if entry.name in ZOO:
        raise ValueError(f"zoo name {entry.name!r} is registered twice")
    ZOO[entry.name] = entry
    return entry


def paper_ratios(entry: ZooEntry, figures: PaperFigures) -> tuple[float | None, float | None]:
    """(our params / printed params, our MACs / printed MACs) for one printed row (None where not printed).

    Block-scope rows (Tables 2 and 5) count one block in the middle of the network; network rows use
    the count the paper's #params corresponds to (``figures.params_field``).
    """
    from igcnas.search_space.costs import closed_form_costs
    from igcnas.search_space.plan import resolve

    if figures.scope == "block":
        block = resolve(entry.config).blocks()[1]
        ours_params = sum(c.params for c in block.convs)
        ours_macs = sum(c.macs for c in block.convs)
    else:
        costs = closed_form_costs(entry.config)
        ours_params = getattr(costs, figures.params_field)
        ours_macs = costs.macs
    params_ratio = None if figures.params is None else ours_params / figures.params
    macs_ratio = None if figures.macs is None else ours_macs / figures.macs
    return params_ratio, macs_ratio


def get_zoo_entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise ValueError(f"unknown zoo network {name!r}; known: {', '.join(ZOO)}")
    return ZOO[name]


def cifar_network(
    family: str,
    width: int,
    depth: int,
    stage_params: list[dict[str, Any]] | dict[str, Any] | None = None,
    *,
    stem_width: int | None = None,
    num_classes: int = 100,
    input_size: int = 32,
    stem_stride: int = 1,
    num_stages: int = 3,
    name: str | None = None,
) -> NetworkConfig:
    """Table 1 layout: ``num_stages`` stages of B = (depth - 2) / 3 blocks, widths x, 2x, 4x."""
    blocks_total = depth - 2
    if blocks_total < num_stages or blocks_total % num_stages != 0:
        raise ValueError(f"depth must be {num_stages} * B + 2 with B >= 1, got {depth}")
    blocks = blocks_total // num_stages
    if stage_params is None:
        stage_params = {}
    if isinstance(stage_params, dict):
        stage_params = [stage_params] * num_stages
    if len(stage_params) != num_stages:
        raise ValueError(f"stage_params must have {num_stages} entries, got {len(stage_params)}")
    stages = tuple(
        StageConfig(width=width * 2**i, blocks=blocks, stride=1 if i == 0 else 2, **stage_params[i])
        for i in range(num_stages)
    )
    return NetworkConfig(
        family=family,
        stages=stages,
        stem_width=width if stem_width is None else stem_width,
        stem_stride=stem_stride,
        num_classes=num_classes,
        input_size=input_size,
        name=name,
    )


def _flat(family: str, width: int, params: dict[str, Any], name: str) -> NetworkConfig:
    """The 8-layer network of Tables 2 and 5: stem, 6 blocks at 32x32, classifier."""
    return NetworkConfig(
        family=family,
        stages=(StageConfig(width=width, blocks=6, stride=1, **params),),
        stem_width=width,
        num_classes=100,
        input_size=32,
        name=name,
    )


def _add(name: str, config: NetworkConfig, *figures: PaperFigures, note: str = "") -> None:
    register_zoo(ZooEntry(name=name, config=config.replace(name=name), paper=figures, note=note))


# Tables 3, 4 and 6: one convention reproduces every row (conv weights as the paper's #params, MACs of the
# convolutions and the classifier as its FLOPs): the first conv able to change the width does
# (transition="first_able"), the first unit of stages 2 and 3 has a strided 1x1 projection shortcut + BN
# grouped like the network (1 group for Xception, x/2 for IGC-V1 and IGC-V2, x for IGC-V2*: one input
# channel per group like its channel-wise convs; x/2 puts C416's MACs at 1.051), and where the
# stem is narrower than the first stage (Table 3's Xception: the paper's fixed 35-channel first conv;
# IGC-V2*: 64) the unit that widens at stride 1 has no skip.


def _paper(config: NetworkConfig, shortcut_groups: int) -> NetworkConfig:
    return config.replace(transition="first_able", shortcut="projection", shortcut_groups=shortcut_groups)


# Table 3: depth 20, various widths (CIFAR-100). IGC-V2*'s L* is taken per stage from the stage width.
# IGC-V1 keeps its number of primary partitions (L = x/2) in every stage, as IGC-L24M2 does in Table 6;
# Table 1's literal "M = 2 everywhere" gives 1.5-1.8x the printed params.
for _x, _p, _f in ((58, 0.44e6, 0.67e8), (71, 0.66e6, 0.98e8), (83, 0.89e6, 1.31e8)):
    _add(f"xception_c{_x}_d20", _paper(cifar_network("xception", _x, 20, stem_width=35), 1),
         PaperFigures("3", _p, _f))
for _x, _p, _f in ((96, 0.40e6, 0.82e8), (126, 0.60e6, 1.28e8), (150, 0.79e6, 1.72e8)):
    # IGC-L(x/2)M2: the number of partitions stays x/2 in every stage, so M = 2, 4, 8.
    _add(f"igcv1_c{_x}_d20", _paper(cifar_network("igcv1", _x, 20, [{"k1": 2}, {"k1": 4}, {"k1": 8}]), _x // 2),
         PaperFigures("3", _p, _f))
for _x, _p, _f in ((216, 0.32e6, 0.76e8), (304, 0.48e6, 1.12e8), (416, 0.65e6, 1.52e8)):
    _add(
        f"igcv2_star_c{_x}_d20",
        _paper(cifar_network("igcv2_star", _x, 20, [{"k": 8, "l": igcv2_star_l(_x * 2**i, 8)} for i in range(3)],
                             stem_width=64), _x),
        PaperFigures("3", _p, _f, tolerance=0.05),
    )

# Table 4: Xception C35 vs IGC-V2 C64 (K = 8, 16, 32 per stage), depths 8 / 20 / 26.
_IGCV2_C64 = [{"chain": (8, 8)}, {"chain": (16, 16)}, {"chain": (32, 32)}]
for _d, (_xp, _xf), (_ip, _if) in (
    (8, (0.056e6, 0.095e8), (0.047e6, 0.095e8)),
    (20, (0.168e6, 0.268e8), (0.149e6, 0.262e8)),
    (26, (0.223e6, 0.355e8), (0.200e6, 0.346e8)),
):
    _add(f"xception_c35_d{_d}", _paper(cifar_network("xception", 35, _d), 1), PaperFigures("4", _xp, _xf))
    _add(f"igcv2_c64_d{_d}", _paper(cifar_network("igcv2", 64, _d, _IGCV2_C64), 32), PaperFigures("4", _ip, _if))

# Table 6: IGC-V1 C48 (IGC-L24M2: 24 partitions kept in every stage, M = 2, 4, 8) vs IGC-V2 C80
# (K = 10, 16, 20 per stage).
_IGCV1_L24 = [{"k1": 2}, {"k1": 4}, {"k1": 8}]
_IGCV2_C80 = [{"chain": (10, 10)}, {"chain": (16, 16)}, {"chain": (20, 20)}]
for _d, (_vp, _vf), (_ip, _if) in (
    (8, (0.046e6, 1.00e7), (0.046e6, 1.18e7)),
    (20, (0.151e6, 2.89e7), (0.144e6, 3.20e7)),
    (26, (0.203e6, 3.83e7), (0.193e6, 4.21e7)),
):
    _add(f"igcv1_c48_d{_d}", _paper(cifar_network("igcv1", 48, _d, _IGCV1_L24), 24), PaperFigures("6", _vp, _vf))
    _add(f"igcv2_c80_d{_d}", _paper(cifar_network("igcv2", 80, _d, _IGCV2_C80), 40), PaperFigures("6", _ip, _if))

# CIFAR ResNet-56 (He et al. 2016): the dense family at width 16, 27 residual units of two 3x3 convs,
# parameter-free shortcuts; the baseline Structured Convolutions (seed 004) is measured against.
_add("resnet56", cifar_network("dense", 16, 56, num_classes=10),
     note="CIFAR-10 ResNet-56: 853,018 params, 125,485,696 MACs")


def _structured(config: NetworkConfig, small_kernel: int, channel_reduction: int) -> NetworkConfig:
    """``config`` with Structured Convolutions in every stage (counts: deployed form; no paper rows offline)."""
    return config.replace(stages=tuple(replace(stage, small_kernel=small_kernel, channel_reduction=channel_reduction)
                                       for stage in config.stages))


# Structured variants (seed 004): 3x3 kernels from 2x2 ones (ResNet-56 at 0.45x params), input channels
# halved (0.50x), and IGC-V2 C64 D20 with both.
_add("resnet56_sc_n2", _structured(ZOO["resnet56"].config, 2, 1),
     note="ResNet-56, every 3x3 a structured conv from a 2x2 kernel")
_add("resnet56_sc_c2", _structured(ZOO["resnet56"].config, 3, 2),
     note="ResNet-56, every conv from a kernel over half its input channels")
_add("igcv2_c64_d20_sc_n2c2", _structured(ZOO["igcv2_c64_d20"].config, 2, 2),
     note="IGC-V2 C64 D20 with structured convs: 2x2 spatial, half the channels per group")

# Table 2: 8-layer networks, per-block figures ("#Params / FLOPs" within each block, printed as
# approximations, hence the 10% tolerance).
for _x, _p in ((64, 4700), (96, 10000), (128, 17000)):
    _add(
        f"xception_c{_x}_d8_flat",
        _flat("xception", _x, {}, ""),
        PaperFigures("2", _p, None, "block", 0.10),
    )
for _x, _k, _f in ((144, 12, 4.8e6), (256, 16, 1.0e7), (361, 19, 1.7e7)):
    figures = [PaperFigures("2", None, _f, "block", 0.10)]
    if _x == 256:  # Table 5's IGC-V2 II C256 is the same network
        figures.append(PaperFigures("5", 10000, 1.1e7, "block", 0.10))
    _add(f"igcv2_c{_x}_d8_flat", _flat("igcv2", _x, {"chain": (_k, _k)}, ""), *figures)

# Table 5: IGC-V1 (M = 2), IGC-V2 I (k1 = 2, K_2 = K_3) and IGC-V2 II (channel-wise, balanced).
for _x, _p, _f in ((64, 3000, 3.2e6), (96, 6000, 6.1e6), (128, 10000, 1.1e7)):
    _add(f"igcv1_c{_x}_d8_flat", _flat("igcv1", _x, {"k1": 2}, ""), PaperFigures("5", _p, _f, "block", 0.10))
for _x, _k, _p, _f in ((98, 7, 3000, 3.2e6), (162, 9, 6000, 6.1e6), (242, 11, 10000, 1.1e7)):
    _add(
        f"igcv2_i_c{_x}_d8_flat",
        _flat("igcv2", _x, {"k1": 2, "chain": (_k, _k)}, ""),
        PaperFigures("5", _p, _f, "block", 0.10),
    )
for _x, _k, _p, _f in ((100, 10, 3000, 3.2e6), (169, 13, 6000, 6.1e6)):
    _add(
        f"igcv2_ii_c{_x}_d8_flat",
        _flat("igcv2", _x, {"chain": (_k, _k)}, ""),
        PaperFigures("5", _p, _f, "block", 0.10),
    )

# IGC-V3 on ImageNet (224x224, 1000 classes): MobileNetV2 layout with deeper stages and
# group-2 pointwise convolutions; 3.5M params / 320M MACs reported (72.2% top-1).
_IGCV3_STAGES = ((1, 16, 1, 1), (6, 24, 4, 2), (6, 32, 6, 2), (6, 64, 8, 2), (6, 96, 6, 1), (6, 160, 6, 2),
                 (6, 320, 1, 1))
_add(
    "igcv3_1.0",
    NetworkConfig(
        family="igcv3",
        stages=tuple(
            StageConfig(width=c, blocks=n, stride=s, expansion=t, groups=2) for t, c, n, s in _IGCV3_STAGES
        ),
        stem_width=32,
        stem_stride=2,
        head_width=1280,
        num_classes=1000,
        input_size=224,
    ),
    PaperFigures("IGCV3", 3.49e6, 3.2e8, tolerance=0.01, params_field="params", macs_tolerance=0.05),
    note="ImageNet, 224x224",
)
