"""Registry of block families: one PyTorch module class per family name.

Mirrors timm's ``register_model``: a decorator adds a class under a unique
name, and a duplicate name is an error rather than a silent override.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from torch import nn

__all__ = ["register_block", "get_block", "block_names", "BLOCKS"]

BLOCKS: dict[str, type[nn.Module]] = {}

T = TypeVar("T", bound=type[nn.Module])


def register_block(name: str) -> Callable[[T], T]:
    def decorator(cls: T) -> T:
        if name in BLOCKS:
            raise ValueError(f"block family {name!r} is registered twice ({BLOCKS[name].__name__}, {cls.__name__})")
        BLOCKS[name] = cls
        cls.family = name  # type: ignore[attr-defined]
        return cls

    return decorator


def get_block(name: str) -> type[nn.Module]:
    from igcnas.models import blocks  # noqa: F401  (importing registers every family)

    if name not in BLOCKS:
        raise ValueError(f"block family must be one of {', '.join(BLOCKS)}, got {name!r}")
    return BLOCKS[name]


def block_names() -> tuple[str, ...]:
    from igcnas.models import blocks  # noqa: F401

    return tuple(BLOCKS)
