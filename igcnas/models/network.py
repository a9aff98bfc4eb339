"""Whole networks built from a :class:`NetworkConfig` via its resolved plan.

Structure and the choices the paper leaves open are documented in
:mod:`igcnas.search_space.plan`; this module only instantiates them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from igcnas.models.registry import get_block
from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.families import get_family
from igcnas.search_space.plan import NetworkPlan, ShortcutPlan, UnitPlan, resolve

__all__ = ["IGCNet", "build_model", "ZeroPadShortcut"]


class ZeroPadShortcut(nn.Module):
    """Parameter-free skip across a shape change: subsample by the stride, zero-pad new channels."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.extra = c_out - c_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x


def _shortcut(plan: ShortcutPlan) -> nn.Module:
    if plan.kind == "identity":
        return nn.Identity()
    if plan.kind == "zero_pad":
        return ZeroPadShortcut(plan.c_in, plan.c_out, plan.stride)
    p = plan.projection
    if p is None:
        raise ValueError("projection shortcut without a projection convolution")
    return nn.Sequential(nn.Conv2d(p.c_in, p.c_out, 1, stride=p.stride, groups=p.groups, bias=False), nn.BatchNorm2d(p.c_out))


class Unit(nn.Module):
    """Blocks with one skip connection around them (post-activation: ReLU after the sum)."""

    def __init__(self, family: str, plan: UnitPlan, *, form: str = "train") -> None:
        super().__init__()
        block_cls = get_block(family)
        n = len(plan.blocks)
        has_skip = plan.shortcut is not None
        if getattr(block_cls, "has_final_activation", False):
            blocks = [block_cls(b, final_activation=not (has_skip and i == n - 1), form=form)
                      for i, b in enumerate(plan.blocks)]
        else:
            blocks = [block_cls(b, form=form) for b in plan.blocks]
        self.blocks = nn.Sequential(*blocks)
        self.shortcut = _shortcut(plan.shortcut) if plan.shortcut is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x)
        if self.shortcut is None:
            return out
        return F.relu(out + self.shortcut(x))


class IGCNet(nn.Module):
    """stem -> stages of units -> (head 1x1) -> global average pool -> classifier."""

    def __init__(self, config: NetworkConfig, *, generator: torch.Generator | None = None,
                 form: str = "train") -> None:
        super().__init__()
        self.config = config
        self.form = form  # how structured stages are built (see models/structured.conv_for)
        plan: NetworkPlan = resolve(config)
        self.plan = plan
        act = {"relu": nn.ReLU, "relu6": nn.ReLU6}[get_family(config.family).activation]
        s = plan.stem
        self.stem = nn.Sequential(
            nn.Conv2d(s.c_in, s.c_out, 3, stride=s.stride, padding=1, bias=False),
            nn.BatchNorm2d(s.c_out),
            act(inplace=True),
        )
        self.stages = nn.Sequential(
            *(nn.Sequential(*(Unit(config.family, unit, form=form) for unit in stage)) for stage in plan.stages)
        )
        self.head: nn.Module = nn.Identity()
        if plan.head is not None:
            h = plan.head
            self.head = nn.Sequential(nn.Conv2d(h.c_in, h.c_out, 1, bias=False), nn.BatchNorm2d(h.c_out),
                                      act(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(plan.final_channels, config.num_classes)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """He init for convolutions, unit BN, small classifier; deterministic given ``generator``."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01, generator=generator)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The tail: head 1x1 (if any), global pooling, classifier (latency tables time it on its own)."""
        return self.classifier(torch.flatten(self.pool(self.head(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.stages(self.stem(x)))


def build_model(config: NetworkConfig, *, seed: int | None = 0, form: str = "train") -> IGCNet:
    """Build ``config`` with weights drawn from a generator seeded with ``seed`` (None: global RNG).

    ``form`` only matters for structured stages: ``"train"`` builds full kernels (trained with the
    structural regulariser, then decomposed), ``"deployed"`` the sum-pool + small-kernel modules.
    """
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    return IGCNet(config, generator=generator, form=form)
