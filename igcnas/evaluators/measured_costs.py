"""Measured costs of built networks: fvcore counts, a torch flop-counter cross-check, CPU latency.

Units: fvcore counts one unit per multiply-accumulate for convolutions and
linear layers, so its ``conv`` + ``linear`` are MACs; ``torch.utils.flop_counter``
counts FLOPs (2 per MAC), which is exactly what the cross-check asserts.
Operators fvcore does not count are returned by name (``uncounted``), never
folded silently into a zero.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from igcnas.search_space.config import NetworkConfig
from igcnas.errors import BadInput

__all__ = ["MeasuredCosts", "Latency", "measure_costs", "measure_latency", "measure_config",
           "as_designed"]

log = logging.getLogger(__name__)

_MAC_OPERATORS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


@dataclass(frozen=True)
class MeasuredCosts:
    params: int  # trainable parameters of the module
    conv_params: int  # weights of nn.Conv2d layers only
    macs: int  # fvcore conv + linear counts (multiply-accumulates)
    fvcore_total: int  # everything fvcore counts (adds BatchNorm and pooling)
    by_operator: dict[str, int]
    uncounted: dict[str, int]  # operators fvcore saw but does not count, with occurrences
    torch_flops: int  # torch.utils.flop_counter total (FLOPs, 2 per MAC)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["flops"] = self.flops
        return data


@dataclass(frozen=True)
class Latency:
    """Milliseconds per forward pass at each batch size (:mod:`igcnas.evaluators.timing`'s figure), the
    threads they were measured with, and whether the machine was too busy for a clean figure."""

    ms_by_batch: dict[int, float]
    threads: int
    contended: bool = False


@contextlib.contextmanager
def as_designed(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with every block running its 1x1 chain as the chain of group convolutions it is.

    Training may switch blocks to the composed fast path (one dense kernel, same function); counts,
    exports and deployment latency belong to the network as designed, which is what a user deploys.
    """
    strategies = {m: m.strategy for m in model.modules() if isinstance(getattr(m, "strategy", None), str)}
    for m in strategies:
        m.strategy = "chain"
    try:
        yield model
    finally:
        for m, strategy in strategies.items():
            m.strategy = strategy


def measure_costs(model: nn.Module, input_shape: tuple[int, int, int]) -> MeasuredCosts:
    """Count ``model`` on one input of ``input_shape`` (C, H, W) in eval mode with fvcore and torch."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    # Count the network as designed: blocks set to run their 1x1 chain as one composed dense kernel (the
    # fast path, same function) are counted as the chain of group convolutions they compute.
    try:
        with as_designed(model):
            x = torch.zeros(1, *input_shape)
            analysis = FlopCountAnalysis(model, x)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            total = int(analysis.total())
            uncounted = {k: int(v) for k, v in analysis.unsupported_ops().items()}
            from torch.utils.flop_counter import FlopCounterMode

            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(x)
            torch_flops = int(counter.get_total_flops())
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    conv_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    macs = sum(v for k, v in by_operator.items() if k in _MAC_OPERATORS)
    return MeasuredCosts(params, conv_params, macs, total, by_operator, uncounted, torch_flops)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch_sizes: tuple[int, ...] = (1, 32),
    threads: int | None = None,
) -> Latency:
    """Inference latency per batch size, by the project's one timer (PyTorch eager, inference mode).

    ``threads``: intra-op threads while timing (default: the process's setting). The model is left in
    the mode it was in.
    """
    from igcnas.evaluators.latency_runtime import TorchRunner, time_modules

    used = threads if threads is not None else torch.get_num_threads()
    if isinstance(used, bool) or not isinstance(used, int) or used < 1:
        raise BadInput(f"threads must be an integer >= 1, got {threads!r}")
    was_training = model.training
    try:
        timings = {b: time_modules(TorchRunner(threads=used), [(model, input_shape)], b)[0] for b in batch_sizes}
    finally:
        model.train(was_training)
    return Latency({b: t.ms for b, t in timings.items()}, used, any(t.contended for t in timings.values()))


def measure_config(config: NetworkConfig, *, form: str = "deployed") -> MeasuredCosts:
    """Build ``config`` and measure it (fvcore traces the module once).

    Structured stages are measured in their deployed form (sum-pool + small kernel) by default, the
    form the closed-form objectives count; ``form="train"`` measures the full-kernel training form.
    """
    from igcnas.models import build_model

    model = build_model(config, seed=0, form=form)
    return measure_costs(model, config.input_shape)
