"""``xception``: channel-wise 3x3 then a dense 1x1 (IGC with K_1 = 1, K_2 = C)."""

from igcnas.models.blocks._interleaved import InterleavedBlock
from igcnas.models.registry import register_block


@register_block("xception")
class XceptionBlock(InterleavedBlock):
    """Depthwise-separable block; the composed kernel is dense with one path per channel pair."""
