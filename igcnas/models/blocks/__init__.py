"""Block modules: :class:`InterleavedBlock` builds every interleaved family from its layer plan; a family
whose behaviour differs has its own registered class (``igcv3``). Importing this package registers them."""

from igcnas.models.blocks import igcv3  # noqa: F401
from igcnas.models.blocks._interleaved import InterleavedBlock, channel_shuffle

__all__ = ["InterleavedBlock", "channel_shuffle"]
