"""The seed networks a search enqueues before it samples: the balance-condition networks of the IGC-V2
paper (with Xception as its baseline) and the paper's zoo networks carried into the search template.

Seeds are plain configurations of a :class:`~igcnas.search_space.spec.SearchSpec`; the search encodes
them into genes (:meth:`~igcnas.search_space.genome.Genome.encode`) like any other network, so this
module needs neither the genome nor its moves.
"""

from __future__ import annotations

import math
from typing import Any

from igcnas.search_space.conditions import check_balance
from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import get_family
from igcnas.search_space.spec import SearchSpec, choices_of
from igcnas.search_space.paper_networks import ZOO

__all__ = ["seed_configs", "zoo_seed_configs"]


def seed_configs(spec: SearchSpec, *, max_seeds: int = 6) -> list[NetworkConfig]:
    """The balance-condition networks, to enqueue before sampling starts.

    For IGC-V2 at the middle, the largest and the smallest searched width (and the smallest block
    count), every stage takes its complementary factorisation closest to the balance condition
    (lowest excess of the 1x1 chain's params over their bound, then fewer convolutions); Xception
    at the same widths comes along as the paper's baseline. At most ``max_seeds`` networks.
    """
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
