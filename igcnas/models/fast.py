"""Fast CPU execution of IGC networks: same function, faster kernels.

On CPUs a chain of small group 1x1 convolutions runs at a few percent of the
machine's peak, so the paper's MAC savings do not turn into speed by
themselves (see ``../shared/notes/cpu-performance.md``). This module offers,
per interleaved block, exactly the same function computed differently:

* ``chain``: the reference, one ``nn.Conv2d`` per group convolution with
  view/transpose permutations between them;
* ``composed``: the chain multiplied into one dense 1x1 kernel
  ``W = W_L P_L ... W_2 P_2`` from the current parameters on every forward
  pass (so gradients reach the sparse factors unchanged), applied as one conv.

``choose_strategies`` times both once per distinct block shape (forward +
backward, or forward only for inference) and keeps the faster; users can force
one with ``set_strategy``. Which of these a training uses (with memory format
and ``torch.compile``, plain PyTorch among the candidates) is decided by timing
whole steps in :mod:`igcnas.models.training_path`; keeping large activation
buffers in the heap (``configure_allocator``) is process-wide. For inference
``fuse_batchnorm`` folds BatchNorm into the convolutions and ``optimize_for_inference`` picks the fastest of the
reference and the fused variants by timing them on the real input shape, so
it is never slower than the reference beyond timing noise.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import time
from typing import TYPE_CHECKING, Callable, Iterable

import torch
from torch import nn

from igcnas.models.blocks._interleaved import InterleavedBlock

if TYPE_CHECKING:
    from igcnas.models.decision_cache import DecisionCache

__all__ = [
    "composed_pointwise_weight",
    "set_strategy",
    "choose_strategies",
    "configure_allocator",
    "fuse_batchnorm",
    "optimize_for_inference",
    "time_in_turns",
]

log = logging.getLogger(__name__)
STRATEGIES = ("chain", "composed")
_ALLOCATOR_DONE = False


def configure_allocator() -> bool:
    """Keep freed large blocks in glibc's heap (no mmap/trim churn): process-wide, idempotent.

    glibc returns blocks of 32 MiB and more to the OS on free, so every new activation of that size
    page-faults and is zeroed again; IGC nets, with many such activations, train 1.5-2.4x faster
    without it. Returns False where glibc is not available.
    """
    global _ALLOCATOR_DONE
    if _ALLOCATOR_DONE:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.mallopt(-4, 0)  # M_MMAP_MAX: never mmap large blocks
    libc.mallopt(-1, 1 << 34)  # M_TRIM_THRESHOLD: never trim the heap
    libc.mallopt(-2, 256 << 20)  # M_TOP_PAD
    _ALLOCATOR_DONE = True
    return True


def composed_pointwise_weight(block: InterleavedBlock) -> torch.Tensor:
    """The chain's dense kernel (c_out x c_mid x 1 x 1), differentiable in the group weights."""
    return block.composed_weight()


def set_strategy(model: nn.Module, strategy: str) -> None:
    """Force ``chain`` or ``composed`` on every interleaved block that has a 1x1 chain."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    for block in _chain_blocks(model):
        block.strategy = strategy


def _chain_blocks(model: nn.Module) -> Iterable[InterleavedBlock]:
    return (m for m in model.modules() if isinstance(m, InterleavedBlock) and len(m.pointwise) > 0 and m.composable)


def time_in_turns(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Seconds per call of each function by the project's one timer (:mod:`igcnas.evaluators.timing`).

    In turns, not one function after the other: a machine's speed drifts over seconds (clock, other load,
    the slow phases of a shared cloud machine), and drift must not decide between variants a few percent
    apart. ``repeats`` blocks of each must count; calls of half a second or more (on average over the
    warm-up) get at most two, and the whole comparison at most three times what those blocks take.
    """
    from igcnas.evaluators.timing import time_calls

    start = time.perf_counter()
    for fn in fns.values():  # warm-up: one-off kernel selection, first-touch pages
        fn()
    typical = (time.perf_counter() - start) / max(1, len(fns))
    rounds = repeats if typical < 0.5 else min(repeats, 2)
    timings = time_calls(list(fns.values()), warmup=0, min_fast_blocks=rounds,
                         max_seconds=max(1.0, 3.0 * rounds * typical * len(fns)))
    return {name: timing.ms / 1000.0 for name, timing in zip(fns, timings)}


# Timings are kept for the process's lifetime: a search builds many networks that share block shapes,
# and a decision depends only on the shape, batch, memory format, threads and dtype in the key.
_CHOICES: dict[tuple, str] = {}


def choose_strategies(model: nn.Module, input_shape: tuple[int, int, int], *, batch: int = 32,
                      training: bool = True, channels_last: bool = True, repeats: int = 3,
                      device: torch.device | None = None, time_each: Callable[..., dict[str, float]] | None = None,
                      choices: dict[tuple, str] | None = None) -> dict[str, int]:
    """Time chain vs composed once per distinct block shape and keep the faster for each block.

    Only the blocks' own work is timed (random inputs of the block's input shape), so this costs a
    few milliseconds per distinct shape, once per process. Returns how many blocks got each strategy.
    ``time_each`` (``{name: step}``, repeats) -> seconds by name, and ``choices``, the decisions kept by
    shape, default to the one timer and this process's cache; tests pass their own.
    """
    shapes = _CHOICES if choices is None else choices
    timer = time_each or time_in_turns
    device = device or next(model.parameters()).device
    sizes = _block_input_sizes(model, input_shape, device)
    counts = {s: 0 for s in STRATEGIES}
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for block in _chain_blocks(model):
        c_in, size = sizes[id(block)]
        key = (block.plan, c_in, size, training, batch, channels_last, torch.get_num_threads(),
               next(block.parameters()).dtype, str(device))
        if key not in shapes:
            probe = copy.deepcopy(block).train(training)
            x = torch.randn(batch, c_in, size, size, device=device).to(memory_format=fmt).requires_grad_(training)

            def step(strategy: str) -> None:
                probe.strategy = strategy
                if training:
                    probe(x).sum().backward()
                else:
                    with torch.no_grad():
                        probe(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # time the kernels, not their launch

            results = timer({s: functools.partial(step, s) for s in STRATEGIES}, repeats)
            shapes[key] = min(results, key=results.get)
            log.debug("block %s at %dx%d: %s", key[0].pointwise, size, size, results)
        block.strategy = shapes[key]
        counts[block.strategy] += 1
    return counts


def _block_input_sizes(model: nn.Module, input_shape: tuple[int, int, int],
                       device: torch.device | None = None) -> dict[int, tuple[int, int]]:
    """(channels, spatial size) entering each interleaved block, found with one tiny forward pass."""
    sizes: dict[int, tuple[int, int]] = {}
    hooks = [b.register_forward_pre_hook(lambda m, args: sizes.__setitem__(id(m), (args[0].shape[1],
                                                                                   args[0].shape[2])))
             for b in _chain_blocks(model)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return sizes


def _fold(conv_weight: torch.Tensor, conv_bias: torch.Tensor | None, bn: nn.BatchNorm2d
          ) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv_bias is not None:
        bias = bias + conv_bias * scale
    return conv_weight * scale.reshape(-1, 1, 1, 1), bias


class FusedInterleavedBlock(nn.Module):
    """Inference form of an interleaved block: BN folded into the convolutions."""

    def __init__(self, block: InterleavedBlock, *, compose: bool) -> None:
        super().__init__()
        s = block.spatial
        w, b = _fold(s.weight, None, block.bn1)
        kw = {"dtype": s.weight.dtype, "device": s.weight.device}
        self.spatial = nn.Conv2d(s.in_channels, s.out_channels, 3, stride=s.stride, padding=1, groups=s.groups, **kw)
        self.spatial.weight.data.copy_(w)
        self.spatial.bias.data.copy_(b)
        self.shuffles = tuple(block.shuffles)
        self.compose = compose and len(block.pointwise) > 0
        self.pointwise = nn.ModuleList()
        if self.compose:
            weight = composed_pointwise_weight(block)
            w, b = _fold(weight, None, block.bn2) if block.bn2 is not None else (weight, None)
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=b is not None, **kw)
            conv.weight.data.copy_(w)
            if b is not None:
                conv.bias.data.copy_(b)
            self.pointwise.append(conv)
            self.shuffles = (1,)
        else:
            for i, old in enumerate(block.pointwise):
                last = i == len(block.pointwise) - 1
                conv = nn.Conv2d(old.in_channels, old.out_channels, 1, groups=old.groups,
                                 bias=last and block.bn2 is not None, **kw)
                if last and block.bn2 is not None:
                    w, b = _fold(old.weight, None, block.bn2)
                    conv.weight.data.copy_(w)
                    conv.bias.data.copy_(b)
                else:
                    conv.weight.data.copy_(old.weight)
                self.pointwise.append(conv)
        self.act = block.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from igcnas.models.blocks._interleaved import channel_shuffle

        x = self.spatial(x)
        for conv, groups in zip(self.pointwise, self.shuffles):
            if groups > 1:
                x = channel_shuffle(x, groups)
            x = conv(x)
        return self.act(x)


@torch.no_grad()
def fuse_batchnorm(model: nn.Module, *, compose: bool | str = "auto") -> nn.Module:
    """A copy of ``model`` for inference with BN folded into the interleaved blocks' convolutions.

    ``compose``: True composes every chain into one dense kernel, False keeps the chain, "auto" keeps
    each block's current strategy (see :func:`choose_strategies`).
    """
    fused = copy.deepcopy(model).eval()

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, InterleavedBlock) and isinstance(child.spatial, nn.Conv2d) and child.composable:
                # (a deployed Structured Convolution block runs as it is: sum-pool + small kernel; see
                # models/decomposition.decompose(fold_bn=True) for its own BN folding)
                use = (getattr(child, "strategy", "chain") == "composed") if compose == "auto" else bool(compose)
                setattr(parent, name, FusedInterleavedBlock(child, compose=use))
            else:
                replace(child)

    replace(fused)
    return fused


def optimize_for_inference(model: nn.Module, input_shape: tuple[int, int, int], *, batch: int = 1,
                           repeats: int = 5, cache: "DecisionCache | None" = None) -> nn.Module:
    """The fastest of the reference and fused variants for this batch size, chosen by timing.

    The choice is kept per machine and network (:mod:`igcnas.models.decision_cache`; ``cache`` defaults
    to the user's file): a later call for the same network here builds the chosen variant without timing.
    """
    from igcnas.models.decision_cache import decision_key, default_cache

    cache = default_cache() if cache is None else cache
    key = "inference | " + decision_key(model, input_shape, batch, torch.device("cpu"))
    known = (cache.get(key) or {}).get("variant")
    reference = copy.deepcopy(model).eval()
    candidates: dict[str, Callable[[], nn.Module]] = {
        "reference": lambda: reference,
        "fused": lambda: _fused(reference, input_shape, batch, channels_last=False),
        "fused_channels_last": lambda: _fused(reference, input_shape, batch, channels_last=True),
    }
    built = {name: make() for name, make in candidates.items() if known not in candidates or name == known}
    set_strategy(reference, "chain")  # the reference candidate is the plain implementation
    if known in built:
        built[known].igcnas_variant = known  # type: ignore[attr-defined]
        return built[known]
    x = torch.randn(batch, *input_shape)
    inputs = {name: x.to(memory_format=torch.channels_last) if name.endswith("channels_last") else x
              for name in built}
    with torch.no_grad():
        timings = time_in_turns({name: functools.partial(built[name], inputs[name]) for name in built}, repeats)
    best = min(timings, key=timings.get)
    log.info("inference variants (batch %d): %s -> %s", batch, {k: round(v * 1e3, 2) for k, v in timings.items()},
             best)
    cache.put(key, {"variant": best, "ms": {k: v * 1e3 for k, v in timings.items()}})
    chosen = built[best]
    chosen.igcnas_variant = best  # type: ignore[attr-defined]
    return chosen


def _fused(reference: nn.Module, input_shape: tuple[int, int, int], batch: int, *, channels_last: bool
           ) -> nn.Module:
    """``reference`` with BN folded, each block's chain or composed kernel chosen by timing in that layout."""
    source = copy.deepcopy(reference).to(memory_format=torch.channels_last) if channels_last else reference
    choose_strategies(source, input_shape, batch=batch, training=False, channels_last=channels_last)
    fused = fuse_batchnorm(source, compose="auto")
    return fused.to(memory_format=torch.channels_last) if channels_last else fused
