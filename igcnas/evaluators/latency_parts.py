"""The parts a latency table times: a network cut into stem, units and tail, each with a key for its speed.

A network here is a stem, a chain of units (blocks with their skip connection, the granularity at which the
plan resolves shapes) and a tail (head 1x1, pooling, classifier). The parts repeat across a search space,
so a table times each distinct one once (:mod:`igcnas.evaluators.latency_table`). A part's key is what
decides its speed and not its weights -- family, resolved shapes, input size -- and it is computed from the
resolved plan alone, because predictions run before every trial and must not build torch modules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.families import get_family
from igcnas.search_space.plan import resolve

__all__ = ["Part", "PartKey", "network_parts", "part_keys"]


class _Tail(nn.Module):
    """The network's head 1x1 (if any), pooling and classifier, as one module of its own (for timing alone)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head, self.pool, self.classifier = model.head, model.pool, model.classifier
        self._classify = type(model).classify

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._classify(self, x)


def _key(*fields: Any) -> str:
    return hashlib.sha1(repr(fields).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class PartKey:
    """What decides a part's speed (not its weights): its key, a label for people and its input shape."""

    key: str
    label: str
    input_shape: tuple[int, ...]  # (C, H, W), without the batch


@dataclass(frozen=True)
class Part(PartKey):
    """A :class:`PartKey` with the module that runs it (taken from a built network)."""

    module: nn.Module


def part_keys(config: NetworkConfig) -> list[PartKey]:
    """The parts of ``config`` in forward order, from its resolved plan alone (no torch modules built).

    Cheap (the plan's resolution): predictions run before every trial.
    """
    plan = resolve(config)
    activation = get_family(config.family).activation
    size = config.input_size
    keys = [PartKey(_key("stem", activation, plan.stem), f"stem {plan.stem.c_in}->{plan.stem.c_out} @{size}",
                    (config.in_channels, size, size))]
    for i, stage_plan in enumerate(plan.stages):
        for j, unit_plan in enumerate(stage_plan):
            first = unit_plan.blocks[0]
            size_in = first.convs[0].size_in
            keys.append(PartKey(_key("unit", config.family, unit_plan),
                                f"{config.family} s{i}u{j} {first.c_in}->{unit_plan.blocks[-1].c_out} @{size_in}",
                                (first.c_in, size_in, size_in)))
    c_final = plan.stages[-1][-1].blocks[-1].c_out
    keys.append(PartKey(_key("tail", activation, plan.head, c_final, plan.final_size, config.num_classes),
                        f"tail {c_final}->{config.num_classes} @{plan.final_size}",
                        (c_final, plan.final_size, plan.final_size)))
    return keys


def network_parts(config: NetworkConfig, model: nn.Module | None = None) -> list[Part]:
    """:func:`part_keys` with the modules that run them, taken from ``model`` (built, deployed form, if None)."""
    from igcnas.models import build_model

    if model is None:
        model = build_model(config, seed=0, form="deployed")
    modules: list[nn.Module] = [model.stem, *(unit for stage in model.stages for unit in stage),
                                _Tail(model)]
    return [Part(k.key, k.label, k.input_shape, module) for k, module in zip(part_keys(config), modules, strict=True)]
