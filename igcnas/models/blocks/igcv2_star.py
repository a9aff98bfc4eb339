"""``igcv2_star``: IGC-V2 with a fixed branch size K (8 in the paper) and L* = ceil(log_K C) + 1."""

from igcnas.models.blocks._interleaved import InterleavedBlock
from igcnas.models.registry import register_block


@register_block("igcv2_star")
class IGCV2StarBlock(InterleavedBlock):
    """K^(L*-1) >= C, so the composed kernel is dense, with several paths when K^(L*-1) > C."""
