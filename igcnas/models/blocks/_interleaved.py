"""The block of every family whose structure is interleaved (see :mod:`igcnas.search_space.families`):
the family decides only the layer plan, and this one class builds it.

``spatial 3x3 group conv -> BN -> [shuffle -> group 1x1 conv] x (L - 1) -> BN -> ReLU``.
There is no non-linearity inside the 1x1 chain, so the chain is one
structured-sparse factorisation ``W_L P_{L-1} ... P_2 W_2`` of a dense 1x1
kernel, exactly the object the complementary and balance conditions describe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from igcnas.models.structured import conv_for
from igcnas.search_space.conditions import shuffle_indices
from igcnas.search_space.plan import InterleavedPlan

__all__ = ["InterleavedBlock", "channel_shuffle"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: new channel ``k * groups + g`` is old ``g * (C / groups) + k``.

    A reshape/transpose (no index gather), so it costs one copy.
    """
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _dense(conv: nn.Conv2d) -> torch.Tensor:
    """A (grouped) 1x1 convolution's weight as its dense (c_out x c_in) matrix."""
    g = conv.groups
    w = conv.weight.reshape(conv.out_channels, conv.in_channels // g)
    if g == 1:
        return w
    return torch.block_diag(*w.reshape(g, conv.out_channels // g, conv.in_channels // g).unbind(0))


class InterleavedBlock(nn.Module):
    """Builds exactly the convolutions of an :class:`InterleavedPlan`.

    ``strategy`` says how the 1x1 chain runs: ``"chain"`` (one conv per group convolution, the
    reference) or ``"composed"`` (the chain multiplied into one dense kernel on every forward
    pass; same function and gradients, see :mod:`igcnas.models.fast`).
    """

    strategy = "chain"
    # Its final ReLU moves after the sum when a unit's skip connection ends on it (see models/network.Unit).
    has_final_activation = True

    def __init__(self, plan: InterleavedPlan, *, final_activation: bool = True, form: str = "train") -> None:
        super().__init__()
        self.plan = plan
        self.spatial = conv_for(plan.spatial, form=form)
        self.bn1 = nn.BatchNorm2d(plan.spatial.c_out)
        self.pointwise = nn.ModuleList(conv_for(p, form=form) for p in plan.pointwise)
        # The composed fast path multiplies full 1x1 kernels; a deployed (sum-pool) chain runs as it is.
        self.composable = all(isinstance(conv, nn.Conv2d) for conv in self.pointwise)
        self.shuffles = tuple(plan.shuffles)
        self.bn2 = nn.BatchNorm2d(plan.c_out) if plan.pointwise else None
        self.act = nn.ReLU(inplace=True) if final_activation else nn.Identity()

    def composed_weight(self) -> torch.Tensor:
        """``W_L P_L ... W_2 P_2`` as one (c_out x c_mid x 1 x 1) kernel, differentiable in the factors."""
        matrix: torch.Tensor | None = None
        for conv, groups in zip(self.pointwise, self.shuffles):
            dense = _dense(conv)
            if groups > 1:
                perm = shuffle_indices(conv.in_channels, groups)  # new channel i reads old channel perm[i]
                if matrix is None:
                    inverse = [0] * len(perm)
                    for new, old in enumerate(perm):
                        inverse[old] = new
                    dense = dense[:, inverse]  # D P without building P
                else:
                    matrix = matrix[perm]  # P M
            matrix = dense if matrix is None else dense @ matrix
        if matrix is None:
            raise ValueError("the block has no pointwise chain to compose")
        return matrix.reshape(matrix.shape[0], matrix.shape[1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.spatial(x))
        if self.strategy == "composed" and len(self.pointwise) > 0 and self.composable:
            x = F.conv2d(x, self.composed_weight())
        else:
            for conv, groups in zip(self.pointwise, self.shuffles):
                if groups > 1:
                    x = channel_shuffle(x, groups)
                x = conv(x)
        if self.bn2 is not None:
            x = self.bn2(x)
        return self.act(x)
