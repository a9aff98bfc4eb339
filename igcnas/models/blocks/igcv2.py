"""``igcv2``: channel-wise (or k1-group) 3x3 then L - 1 group 1x1 convolutions with permutations.

Per stage the chain ``(K_2, ..., K_L)`` is free; the complementary condition
asks ``k1 * prod(K_l) = C`` and the balance condition equal terms.
"""

from igcnas.models.blocks._interleaved import InterleavedBlock
from igcnas.models.registry import register_block


@register_block("igcv2")
class IGCV2Block(InterleavedBlock):
    """Interleaved structured sparse convolution (IGC-V2)."""
