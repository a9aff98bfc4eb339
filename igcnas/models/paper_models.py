"""The papers' networks (the zoo) as PyTorch models, by name; their configurations and the papers' figures
live in :mod:`igcnas.search_space.paper_networks`."""

from __future__ import annotations

from igcnas.models.network import IGCNet, build_model
from igcnas.search_space.paper_networks import get_zoo_entry

__all__ = ["create_zoo_model"]


def create_zoo_model(name: str, *, seed: int | None = 0) -> IGCNet:
    return build_model(get_zoo_entry(name).config, seed=seed)
