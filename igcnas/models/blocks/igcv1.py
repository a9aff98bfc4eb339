"""``igcv1``: primary group 3x3 (M channels per partition) and secondary group 1x1 (M branches).

The permutation between them sends the channels of one primary partition to
different secondary branches, so the pair is complementary (one path).
"""

from igcnas.models.blocks._interleaved import InterleavedBlock
from igcnas.models.registry import register_block


@register_block("igcv1")
class IGCV1Block(InterleavedBlock):
    """Interleaved group convolution with two group convolutions (L = 2)."""
