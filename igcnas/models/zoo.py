"""Instantiate named zoo networks (the configurations live in :mod:`igcnas.search_space.zoo`)."""

from __future__ import annotations

from igcnas.models.network import IGCNet, build_model
from igcnas.search_space.zoo import get_zoo_entry

__all__ = ["create_zoo_model"]


def create_zoo_model(name: str, *, seed: int | None = 0) -> IGCNet:
    return build_model(get_zoo_entry(name).config, seed=seed)
