"""Closed-form parameter and MAC counts (pure Python, microseconds per network).

Units are explicit: ``macs`` are multiply-accumulates (the IGC-V2 paper's
"FLOPs"); FLOPs = 2 x MACs wherever FLOPs are shown. ``by_operator`` follows
fvcore's accounting for an inference pass at batch 1, so that it can be
compared with fvcore exactly, operator by operator:

* ``conv``: MACs of every convolution (weights x output pixels);
* ``linear``: MACs of the classifier (in x out);
* ``batch_norm``: 2 per element of every BatchNorm input (fvcore, eval mode, affine);
* ``adaptive_avg_pool2d``: 1 per element of the pooled feature map.

Operations fvcore does not count (ReLU, residual additions, permutations,
slicing and padding of the zero-pad shortcut, the sum-pools of Structured
Convolutions) are listed by :func:`uncounted_operations` rather than silently
treated as free; the sum-pools' additions are also counted (``sum_pool_adds``).

For Structured Convolutions ``params``, ``conv_params`` and ``macs`` are the
deployed (decomposed) network's, the objectives a search optimises;
``train_params`` is what the training form holds (full kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.plan import InterleavedPlan, InvertedPlan, NetworkPlan, resolve

__all__ = ["CostReport", "closed_form_costs", "uncounted_operations"]


@dataclass(frozen=True)
class CostReport:
    """Exact integer counts for one network at batch 1."""

    params: int  # all trainable parameters (conv weights, BN affine, classifier)
    conv_params: int  # convolution weights only (the paper's convention)
    macs: int  # convolution + classifier multiply-accumulates (the paper's "FLOPs")
    by_operator: dict[str, int]  # fvcore-comparable counts per operator
    train_params: int = 0  # trainable parameters of the training form (full kernels where structured)
    sum_pool_adds: int = 0  # additions of the Structured Convolutions' sum-pools (not MACs; fvcore skips them)

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs (convolutions and classifier)."""
        return 2 * self.macs

    @property
    def fvcore_total(self) -> int:
        return sum(self.by_operator.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "params": self.params,
            "conv_params": self.conv_params,
            "macs": self.macs,
            "flops": self.flops,
            "fvcore_total": self.fvcore_total,
            "by_operator": dict(self.by_operator),
            "train_params": self.train_params,
            "sum_pool_adds": self.sum_pool_adds,
        }


def _plan_costs(plan: NetworkPlan) -> CostReport:
    config = plan.config
    convs = plan.convs()
    conv_params = sum(c.params for c in convs)
    conv_macs = sum(c.macs for c in convs)
    bn_shapes = plan.bn_shapes()
    bn_params = sum(2 * channels for channels, _ in bn_shapes)
    bn_ops = sum(2 * channels * size * size for channels, size in bn_shapes)
    linear_macs = plan.final_channels * config.num_classes
    linear_params = linear_macs + config.num_classes
    pool = plan.final_channels * plan.final_size * plan.final_size
    other_params = bn_params + linear_params
    return CostReport(
        params=conv_params + other_params,
        train_params=sum(c.train_params for c in convs) + other_params,
        sum_pool_adds=sum(c.pool_adds for c in convs),
        conv_params=conv_params,
        macs=conv_macs + linear_macs,
        by_operator={
            "conv": conv_macs,
            "batch_norm": bn_ops,
            "adaptive_avg_pool2d": pool,
            "linear": linear_macs,
        },
    )


def closed_form_costs(config: NetworkConfig) -> CostReport:
    """Params and MACs of ``config`` without building it."""
    return _plan_costs(resolve(config))


def uncounted_operations(config: NetworkConfig) -> dict[str, int]:
    """How many operations of each kind carry no MAC count (elementwise, data movement)."""
    plan = resolve(config)
    relu = 1  # stem
    adds = shuffles = pads = 0
    for stage in plan.stages:
        for unit in stage:
            for block in unit.blocks:
                if isinstance(block, InterleavedPlan):
                    relu += 1
                    shuffles += sum(1 for s in block.shuffles if s > 1)
                elif isinstance(block, InvertedPlan):
                    relu += 2 if block.expand is not None else 1
                    shuffles += (2 if block.expand is not None else 1) if block.groups > 1 else 0
                    adds += int(block.residual)
            if unit.shortcut is not None:
                adds += 1
                pads += int(unit.shortcut.kind == "zero_pad")
    relu += int(plan.head is not None)
    sum_pools = sum(1 for c in plan.convs() if c.pool_adds > 0)
    return {"relu": relu, "residual_add": adds, "channel_shuffle": shuffles, "zero_pad_shortcut": pads,
            "sum_pool": sum_pools}
