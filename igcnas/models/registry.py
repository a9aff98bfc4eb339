"""Which PyTorch module builds each block family: behaviour lives in a class only where it differs.

The families and their layer plans are data (:mod:`igcnas.search_space.families`,
:mod:`igcnas.search_space.plan`). :class:`~igcnas.models.blocks.InterleavedBlock` builds every
family whose structure is :class:`~igcnas.search_space.families.Interleaved` from its plan; a family
that needs other behaviour (``igcv3``'s inverted residual block) registers its own class with
:func:`register_block`. As in timm's ``register_model``, a decorator adds a class under a unique name,
and a duplicate name is an error rather than a silent override.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from torch import nn

from igcnas.search_space.families import FAMILIES

__all__ = ["register_block", "get_block", "block_names", "BLOCKS"]

# The registered special cases only; every other interleaved family is built by InterleavedBlock.
BLOCKS: dict[str, type[nn.Module]] = {}

T = TypeVar("T", bound=type[nn.Module])


def register_block(name: str) -> Callable[[T], T]:
    """Register ``cls`` as the module of family ``name`` (one of the search space's families)."""

    def decorator(cls: T) -> T:
        if name in BLOCKS:
            raise ValueError(f"block family {name!r} is registered twice ({BLOCKS[name].__name__}, {cls.__name__})")
        if name not in FAMILIES:
            raise ValueError(f"block family {name!r} is not a family of igcnas.search_space.families "
                             f"({', '.join(FAMILIES)})")
        BLOCKS[name] = cls
        return cls

    return decorator


def _lookup(name: str) -> type[nn.Module] | None:
    from igcnas.models.blocks import InterleavedBlock  # importing registers the special cases

    if name in BLOCKS:
        return BLOCKS[name]
    family = FAMILIES.get(name) if isinstance(name, str) else None
    return InterleavedBlock if family is not None and family.kind == "interleaved" else None


def get_block(name: str) -> type[nn.Module]:
    """The registered class of family ``name``, else :class:`InterleavedBlock` for an interleaved family."""
    block = _lookup(name)
    if block is None:
        raise ValueError(f"block family must be one of {', '.join(block_names())}, got {name!r}")
    return block


def block_names() -> tuple[str, ...]:
    """Every family :func:`get_block` builds, in the order of the search space's families."""
    return tuple(name for name in FAMILIES if _lookup(name) is not None)
