"""How a network trains fastest here: plain PyTorch or a fast variant, chosen by timing whole training steps.

Why whole steps, and why plain PyTorch is a candidate. The fast path's parts (``channels_last``, chain or
composed pointwise kernels per block, ``torch.compile``) each win on some CPUs and networks and lose on
others: on a 2-core Intel Xeon with AVX-512, ``channels_last`` with the per-block choice trained Xception C35
D20 17% slower than plain PyTorch, while on an AMD EPYC it was faster. A choice made on one machine and
applied everywhere can only be right by luck, so every candidate, plain included, is timed as one forward
and backward pass of the whole network on the batch the training will use, in turns (the project's one
timer, :mod:`igcnas.evaluators.timing`), and a fast variant is kept only when it beats plain by more than
:data:`MARGIN`.

Why not always per network. Timing the four eager candidates costs about :data:`CHOICE_STEPS` training
steps. A training of at least ``CHOICE_STEPS / CHOICE_SHARE`` steps times its own network. A shorter one (a
search's trial on digits: tens of steps of milliseconds) takes the decision made for its *kind* here (the
network's family, input shape and batch), timed once on the first network of that kind with at least
:data:`MIN_TIMED_STEPS` steps and kept: on digits (2-core AMD EPYC, 12 IGC-V2 networks of the space, 4
epochs) plain took 25.2 s, the per-block choice alone 16.0 s and ``channels_last`` with it 10.7 s, so
plain for every short training would have made searches 2.3x slower.

``torch.compile`` is a candidate only where it can pay for itself: compiling the training step of a
20-block CIFAR network took 19-50 s on a 2-core AMD EPYC and 47-92 s on a 2-core Intel Xeon, and made the
steps 0.76-1.26x and 0.97-1.27x as fast (IGC-V2 C64 D20 lost on both, Xception C35 D20 gained on both). It
is tried only for a training long enough to time its own network, lasting at least
:data:`COMPILE_PAYBACK` times the expected compile (steps x the best eager step), so that a compile that
gains nothing costs about 1/COMPILE_PAYBACK of the training (the model is then compiled a second time
when kept, from PyTorch's warm caches: about 1 s). Once tried, the measured compile time and step are
kept, and later trainings of the same network compile only when the measured gain over their length
exceeds the measured compile time.

Decisions are kept in a file per user (:mod:`igcnas.models.decision_cache`) under a key of the machine
(CPU model or GPU, PyTorch version, device, threads) and the network (its module structure, input shape,
batch, dtype and precision): a decision made on one machine is never applied on another.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from igcnas.models.decision_cache import DecisionCache, decision_key, default_cache, kind_key
from igcnas.models.fast import choose_strategies, configure_allocator, set_strategy, time_in_turns

__all__ = ["TrainingPath", "PLAIN", "EAGER_PATHS", "PathDecision", "DecisionCache", "PreparedModel",
           "decide_training_path", "apply_path", "prepare_for_training", "MARGIN", "CHOICE_STEPS",
           "CHOICE_SHARE", "MIN_TIMED_STEPS", "COMPILE_PAYBACK", "compile_estimate_seconds", "decision_key",
           "StepTimer", "Compiler"]

log = logging.getLogger(__name__)

MARGIN = 0.03  # a variant must beat plain (and compile the best eager path) by this share to be kept
# What timing the eager candidates costs, in training steps (warm-ups, block sizing, the per-block choice and
# the blocks the timer rejects included): 58-130 steps (11-245 s) over the benchmark's 8 CIFAR networks at batch
# 128 on a 2-core AMD EPYC, small networks at the top (fixed costs); about the middle is taken.
CHOICE_STEPS = 90
CHOICE_SHARE = 0.05  # the most of a training's expected time spent timing its own network
MIN_TIMED_STEPS = 20  # below this (a few batches: smoke runs, tests) a training without a decision trains plain
COMPILE_PAYBACK = 20  # compile only when the training is at least this many times the compile's time
# What a first compile of a training step costs before one was measured for the network here, per leaf module
# (convolutions, norms, activations), with a floor. Measured at batch 128 on 2-core CPUs: IGC-V2 C64 D20 (125
# modules) 43-50 s on an AMD EPYC and 92 s on an Intel Xeon, Xception C35 D20 (107) 19-32 s and 47 s:
# 0.18-0.74 s per module. The estimate takes the slowest, so that a compile is tried for fewer trainings.
COMPILE_SECONDS_PER_MODULE = 0.75
COMPILE_SECONDS_FLOOR = 20.0

Layout = Literal["contiguous", "channels_last"]
Blocks = Literal["chain", "timed"]


@dataclass(frozen=True)
class TrainingPath:
    """One way to run the same network: memory format, pointwise kernels, compiled or not.

    ``blocks``: ``chain`` runs every group convolution as its own ``nn.Conv2d`` (plain PyTorch); ``timed``
    lets :func:`igcnas.models.fast.choose_strategies` pick chain or composed per block shape.
    """

    layout: Layout = "contiguous"
    blocks: Blocks = "chain"
    compiled: bool = False

    @property
    def name(self) -> str:
        parts = ("channels_last" if self.layout == "channels_last" else "",
                 "timed-blocks" if self.blocks == "timed" else "", "compiled" if self.compiled else "")
        return "+".join(p for p in parts if p) or "plain"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.layout == "channels_last" else torch.contiguous_format

    @classmethod
    def from_name(cls, name: str) -> "TrainingPath":
        parts = set() if name == "plain" else set(name.split("+"))
        known = {"channels_last", "timed-blocks", "compiled"}
        if not parts <= known:
            raise ValueError(f"training path {name!r}: parts must be among plain, {', '.join(sorted(known))}")
        return cls("channels_last" if "channels_last" in parts else "contiguous",
                   "timed" if "timed-blocks" in parts else "chain", "compiled" in parts)


PLAIN = TrainingPath()
EAGER_PATHS = (PLAIN, TrainingPath(blocks="timed"), TrainingPath("channels_last"),
               TrainingPath("channels_last", "timed"))


@dataclass(frozen=True)
class PathDecision:
    """The path a training runs with, why, and the step times (ms, by path name) it was judged on."""

    path: TrainingPath
    reason: str
    step_ms: dict[str, float] = field(default_factory=dict)
    compile_seconds: float | None = None  # measured here or earlier for this network; None: never compiled
    decide_seconds: float = 0.0  # what timing the candidates (and compiling) cost when the decision was made
    from_cache: bool = False

    def to_json(self) -> dict:
        return {"path": self.path.name, "reason": self.reason, "step_ms": self.step_ms,
                "compile_seconds": self.compile_seconds, "decide_seconds": self.decide_seconds}

    @classmethod
    def from_json(cls, data: dict) -> "PathDecision":
        return cls(TrainingPath.from_name(data["path"]), str(data["reason"]),
                   {str(k): float(v) for k, v in data.get("step_ms", {}).items()},
                   None if data.get("compile_seconds") is None else float(data["compile_seconds"]),
                   float(data.get("decide_seconds", 0.0)), True)


def _read(cache: DecisionCache, key: str) -> PathDecision | None:
    """The decision kept under ``key``, or None (also for an entry an older release wrote differently)."""
    entry = cache.get(key)
    try:
        return None if entry is None else PathDecision.from_json(entry)
    except (KeyError, TypeError, ValueError):
        log.debug("ignoring an unreadable training-path decision for %s", key)
        return None


def compile_estimate_seconds(model: nn.Module) -> float:
    """The expected time of a first compile of ``model``'s training step (see COMPILE_SECONDS_PER_MODULE)."""
    modules = sum(1 for m in model.modules() if not list(m.children()))
    return max(COMPILE_SECONDS_FLOOR, COMPILE_SECONDS_PER_MODULE * modules)


class StepTimer(Protocol):
    """``{name: step}`` and a number of rounds -> seconds per step by name (in turns; see fast.time_in_turns)."""

    def __call__(self, steps: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]: ...


Compiler = Callable[[nn.Module, torch.device], nn.Module]


def _compile(module: nn.Module, device: torch.device) -> nn.Module:
    """``torch.compile`` for a training step; on CUDA with CUDA graphs ("reduce-overhead"): small networks
    there are bound by kernel launches. Shapes are static: the trainer sends other batch sizes to the eager
    module instead of compiling again."""
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    return torch.compile(module, mode=mode, dynamic=False)


def apply_path(model: nn.Module, path: TrainingPath, input_shape: tuple[int, int, int], *, batch: int,
               device: torch.device, compiler: Compiler = _compile) -> nn.Module:
    """Set ``model`` (in place) to ``path``'s layout and kernels; returns what training steps should call
    (a compiled wrapper sharing ``model``'s parameters, or ``model`` itself)."""
    model.to(memory_format=path.memory_format)
    if path.blocks == "timed":
        choose_strategies(model, input_shape, batch=batch, training=True,
                          channels_last=path.layout == "channels_last", device=device)
    else:
        set_strategy(model, "chain")
    return compiler(model, device) if path.compiled else model


def _step(module: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
          precision: str) -> Callable[[], None]:
    """One training step's work (forward under the training's precision, loss, backward) as a timed call."""
    from igcnas.evaluators.device import autocast

    def step() -> None:
        module.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = F.cross_entropy(module(x), y)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # time the kernels, not their launch
    return step


def _sample_batch(model: nn.Module, input_shape: tuple[int, int, int], batch: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch and labels for the model's number of classes (found with one tiny forward pass)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        classes = int(model(torch.zeros(1, *input_shape, device=device)).shape[-1])
    model.train(was)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *input_shape, generator=g).to(device)
    return x, torch.randint(0, max(classes, 1), (batch,), generator=g).to(device)


def decide_training_path(model: nn.Module, input_shape: tuple[int, int, int], *, batch: int,
                         expected_steps: int, device: torch.device | None = None, precision: str = "fp32",
                         time_steps: StepTimer | None = None, cache: DecisionCache | None = None,
                         compiler: Compiler = _compile, allow_compile: bool = True) -> PathDecision:
    """The fastest path for training ``model`` for about ``expected_steps`` steps of ``batch`` images here.

    ``model`` is not changed (candidates are timed on copies). ``precision``: what the training runs its
    forward passes in (fp32, bf16, fp16), timed so and part of the key. ``time_steps`` and ``compiler``
    default to the project's timer and ``torch.compile``; tests inject their own. See the module docstring.
    """
    if expected_steps < 0 or batch < 1:
        raise ValueError(f"expected_steps must be >= 0 and batch >= 1, got {expected_steps} and {batch}")
    device = device or next(model.parameters()).device
    cache = default_cache() if cache is None else cache
    key = decision_key(model, input_shape, batch, device, precision)
    kind = kind_key(model, input_shape, batch, device, precision)
    known = _read(cache, key)
    short = expected_steps < CHOICE_STEPS / CHOICE_SHARE
    if known is None and short:
        similar = _read(cache, kind)
        if similar is not None:  # a short training takes what was timed for its kind here
            return replace(similar, path=replace(similar.path, compiled=False), from_cache=True,
                           reason=f"short training, as timed for this kind of network: {similar.reason}")
        if expected_steps < MIN_TIMED_STEPS:
            return PathDecision(PLAIN, f"{expected_steps} steps: plain, not worth timing")
    began = time.perf_counter()
    sample = functools.cache(lambda: _sample_batch(model, input_shape, batch, device))
    bind = functools.partial(_step, device=device, precision=precision)
    timer = time_steps or time_in_turns
    decision = known or _time_eager(model, input_shape, batch, device, sample, bind, timer)
    best_s = decision.step_ms.get(decision.path.name, 0.0) / 1e3
    estimate = compile_estimate_seconds(model)
    if allow_compile and decision.compile_seconds is None:  # never compiled for this network here
        if not short and expected_steps * best_s >= COMPILE_PAYBACK * estimate:
            decision = _try_compile(decision, model, input_shape, batch, device, sample, bind, timer, compiler)
        elif known is None:
            decision = replace(decision, reason=decision.reason + f"; not compiled: {expected_steps} steps of "
                               f"{best_s * 1e3:.0f} ms < {COMPILE_PAYBACK} x a ~{estimate:.0f} s compile")
    if decision is not known:
        decision = replace(decision, decide_seconds=decision.decide_seconds + time.perf_counter() - began)
        cache.put(key, decision.to_json())
        if cache.get(kind) is None:  # the first network of its kind decides for the kind's short trainings
            cache.put(kind, decision.to_json())
        log.info("training path for a %s network, batch %d: %s (%s)", tuple(input_shape), batch,
                 decision.path.name, decision.reason)
    return decision if known is None else _revisit(decision, expected_steps, allow_compile)


Sample = Callable[[], tuple[torch.Tensor, torch.Tensor]]
StepMaker = Callable[[nn.Module, torch.Tensor, torch.Tensor], Callable[[], None]]


def _time_eager(model: nn.Module, input_shape: tuple[int, int, int], batch: int, device: torch.device,
                sample: Sample, make_step: StepMaker, timer: StepTimer) -> PathDecision:
    """Every eager candidate timed in turns on a copy of ``model``; plain unless one beats it by MARGIN."""
    x, y = sample()
    steps: dict[str, Callable[[], None]] = {}
    for path in EAGER_PATHS:
        candidate = apply_path(copy.deepcopy(model).train(), path, input_shape, batch=batch, device=device)
        steps[path.name] = make_step(candidate, x.contiguous(memory_format=path.memory_format), y)
    seconds = timer(steps, 3)
    step_ms = {name: s * 1e3 for name, s in seconds.items()}
    best_name = min(seconds, key=seconds.get)
    if seconds[best_name] > seconds[PLAIN.name] * (1.0 - MARGIN):
        return PathDecision(PLAIN, f"no variant beat plain by {MARGIN:.0%}", step_ms)
    return PathDecision(TrainingPath.from_name(best_name),
                        f"{best_name} {seconds[PLAIN.name] / seconds[best_name]:.2f}x plain", step_ms)


def _try_compile(decision: PathDecision, model: nn.Module, input_shape: tuple[int, int, int], batch: int,
                 device: torch.device, sample: Sample, make_step: StepMaker, timer: StepTimer,
                 compiler: Compiler) -> PathDecision:
    """Compile the best eager path, time it against that path in turns, keep it if it beats it by MARGIN.

    The trial compiles a copy; the model itself is compiled again when the path is applied, which reuses
    what this compile left in PyTorch's caches (measured: about 1 s, against 19-50 s for the first).
    """
    x, y = sample()
    eager = decision.path
    compiled_path = replace(eager, compiled=True)
    candidate = copy.deepcopy(model).train()
    module = apply_path(candidate, compiled_path, input_shape, batch=batch, device=device, compiler=compiler)
    xin = x.contiguous(memory_format=eager.memory_format)
    step = make_step(module, xin, y)
    start = time.perf_counter()
    step()  # the compile happens here (forward and backward graphs)
    compile_seconds = time.perf_counter() - start
    reference = copy.deepcopy(model).train()
    eager_step = make_step(apply_path(reference, eager, input_shape, batch=batch, device=device), xin, y)
    seconds = timer({eager.name: eager_step, compiled_path.name: step}, 3)
    # on the scale of the eager candidates' timing (the machine's speed moves between timings): their ratio
    ratio = seconds[compiled_path.name] / seconds[eager.name]
    step_ms = {**decision.step_ms, compiled_path.name: decision.step_ms[eager.name] * ratio}
    if seconds[compiled_path.name] < seconds[eager.name] * (1.0 - MARGIN):
        return PathDecision(compiled_path, decision.reason + f"; compiled in {compile_seconds:.0f} s, "
                            f"{seconds[eager.name] / seconds[compiled_path.name]:.2f}x {eager.name}",
                            step_ms, compile_seconds)
    return replace(decision, step_ms=step_ms, compile_seconds=compile_seconds,
                   reason=decision.reason + f"; compile ({compile_seconds:.0f} s) gained "
                   f"{seconds[eager.name] / seconds[compiled_path.name]:.2f}x, under {MARGIN:.0%}: eager")


def _revisit(known: PathDecision, expected_steps: int, allow_compile: bool) -> PathDecision:
    """A decision made before for this network and machine, judged again for this training's length.

    The eager choice holds for any length. Compiling holds only where the measured gain over this
    training pays for the measured compile (a network never compiled here is tried first, by
    :func:`decide_training_path`, when a training is long enough).
    """
    eager = replace(known.path, compiled=False)
    compiled = replace(eager, compiled=True)
    ms = known.step_ms
    pays = (allow_compile and known.compile_seconds is not None and compiled.name in ms and eager.name in ms
            and ms[compiled.name] < ms[eager.name] * (1.0 - MARGIN)
            and expected_steps * (ms[eager.name] - ms[compiled.name]) / 1e3 > known.compile_seconds)
    path = compiled if pays else eager
    return replace(known, path=path, reason=known.reason + ("" if path == known.path else
                   f"; {'compiled' if pays else 'eager'} for {expected_steps} steps"), from_cache=True)


@dataclass
class PreparedModel:
    """A model set up to train on its chosen path: call it like the model.

    A compiled forward is compiled for one batch size; other sizes (an epoch's last, smaller batch) run
    through the eager model, which shares its parameters, instead of compiling again.
    """

    model: nn.Module
    forward: nn.Module
    decision: PathDecision
    batch: int

    @property
    def memory_format(self) -> torch.memory_format:
        return self.decision.path.memory_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward is not self.model and x.shape[0] != self.batch:
            return self.model(x)
        return self.forward(x)


def prepare_for_training(model: nn.Module, input_shape: tuple[int, int, int], *, batch: int = 64,
                         expected_steps: int = 0, device: torch.device | None = None,
                         decide: Callable[..., PathDecision] = decide_training_path, **kwargs: object
                         ) -> PreparedModel:
    """The fast training configuration for this machine: the allocator (CPU), then the path chosen by
    :func:`decide_training_path` (``expected_steps``: about how many steps the training will take) applied
    to ``model`` in place."""
    device = device or next(model.parameters()).device
    if device.type == "cpu":
        configure_allocator()
    decision = decide(model, input_shape, batch=batch, expected_steps=expected_steps, device=device, **kwargs)
    forward = apply_path(model, decision.path, input_shape, batch=batch, device=device,
                         **({"compiler": kwargs["compiler"]} if "compiler" in kwargs else {}))
    return PreparedModel(model=model, forward=forward, decision=decision, batch=batch)

