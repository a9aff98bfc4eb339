"""``dense``: a regular 3x3 convolution, the ResNet-style baseline (L = 1, K_1 = C)."""

from igcnas.models.blocks._interleaved import InterleavedBlock
from igcnas.models.registry import register_block


@register_block("dense")
class DenseBlock(InterleavedBlock):
    """conv 3x3 -> BN -> ReLU; two of them with a skip make a ResNet basic block."""
