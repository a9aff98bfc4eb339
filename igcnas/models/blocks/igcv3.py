"""``igcv3``: the IGC-V3 inverted residual block (Sun et al., BMVC 2018).

group 1x1 expansion -> BN -> ReLU6 -> shuffle -> channel-wise 3x3 -> BN -> ReLU6
-> group 1x1 projection -> BN -> shuffle (+ identity when stride 1 and widths match).
The projection is linear (no activation), as in MobileNetV2's bottleneck.
"""

from __future__ import annotations

import torch
from torch import nn

from igcnas.models.blocks._interleaved import channel_shuffle
from igcnas.models.registry import register_block
from igcnas.models.structured import conv_for
from igcnas.search_space.plan import InvertedPlan


@register_block("igcv3")
class IGCV3Block(nn.Module):
    # Ends in a linear projection (and carries its own residual): there is no final activation for a
    # unit's skip connection to take over, so the network passes none.
    has_final_activation = False

    def __init__(self, plan: InvertedPlan, *, form: str = "train") -> None:
        super().__init__()
        self.plan = plan
        self.groups = plan.groups
        self.residual = plan.residual
        self.expand: nn.Module | None = None
        if plan.expand is not None:
            e = plan.expand
            self.expand = nn.Sequential(
                conv_for(e, form=form),
                nn.BatchNorm2d(e.c_out),
                nn.ReLU6(inplace=True),
            )
        d = plan.depthwise
        self.depthwise = nn.Sequential(
            conv_for(d, form=form),
            nn.BatchNorm2d(d.c_out),
            nn.ReLU6(inplace=True),
        )
        p = plan.project
        self.project = nn.Sequential(conv_for(p, form=form), nn.BatchNorm2d(p.c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand is not None:
            out = self.expand(out)
            if self.groups > 1:
                out = channel_shuffle(out, self.groups)
        out = self.project(self.depthwise(out))
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        return out + x if self.residual else out
