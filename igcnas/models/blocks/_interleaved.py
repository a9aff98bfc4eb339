"""The interleaved block shared by the dense, Xception, Deep Roots, IGC-V1, IGC-V2 and IGC-V2* families.

``spatial 3x3 group conv -> BN -> [shuffle -> group 1x1 conv] x (L - 1) -> BN -> ReLU``.
There is no non-linearity inside the 1x1 chain, so the chain is one
structured-sparse factorisation ``W_L P_{L-1} ... P_2 W_2`` of a dense 1x1
kernel, exactly the object the complementary and balance conditions describe.
"""

from __future__ import annotations

import torch
from torch import nn

from igcnas.search_space.plan import InterleavedPlan

__all__ = ["InterleavedBlock", "channel_shuffle"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: new channel ``k * groups + g`` is old ``g * (C / groups) + k``.

    A reshape/transpose (no index gather), so it costs one copy.
    """
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InterleavedBlock(nn.Module):
    """Builds exactly the convolutions of an :class:`InterleavedPlan`."""

    family = "interleaved"

    def __init__(self, plan: InterleavedPlan, *, final_activation: bool = True) -> None:
        super().__init__()
        self.plan = plan
        s = plan.spatial
        self.spatial = nn.Conv2d(s.c_in, s.c_out, 3, stride=s.stride, padding=1, groups=s.groups, bias=False)
        self.bn1 = nn.BatchNorm2d(s.c_out)
        self.pointwise = nn.ModuleList(
            nn.Conv2d(p.c_in, p.c_out, 1, groups=p.groups, bias=False) for p in plan.pointwise
        )
        self.shuffles = tuple(plan.shuffles)
        self.bn2 = nn.BatchNorm2d(plan.c_out) if plan.pointwise else None
        self.act = nn.ReLU(inplace=True) if final_activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.spatial(x))
        for conv, groups in zip(self.pointwise, self.shuffles):
            if groups > 1:
                x = channel_shuffle(x, groups)
            x = conv(x)
        if self.bn2 is not None:
            x = self.bn2(x)
        return self.act(x)
