"""Block families, one file each; importing this package registers all of them."""

from igcnas.models.blocks import deep_roots, dense, igcv1, igcv2, igcv2_star, igcv3, xception  # noqa: F401
from igcnas.models.blocks._interleaved import InterleavedBlock, channel_shuffle

__all__ = ["InterleavedBlock", "channel_shuffle"]
