"""``deep_roots``: group 3x3 with k1 channels per group, then a dense 1x1 (Ioannou et al.)."""

from igcnas.models.blocks._interleaved import InterleavedBlock
from igcnas.models.registry import register_block


@register_block("deep_roots")
class DeepRootsBlock(InterleavedBlock):
    """Dense composed kernel with k1 paths per channel pair: denser than complementary, more parameters."""
