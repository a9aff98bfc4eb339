"""Where and how latency figures are taken: the runtimes, the fingerprint of a machine, whole-network timing.

A figure means something only on the runtime, thread count, batch and input shape it was taken with, on
that CPU: :class:`Fingerprint` records them, and tables from elsewhere are refused unless forced. A
:class:`Runner` prepares a module for one runtime (PyTorch eager or ONNX Runtime) and hands back the call
to time; the timing itself is the project's one timer's (:mod:`igcnas.evaluators.timing`), the same for
every runtime, so parts and whole networks are measured alike.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from igcnas.errors import BadInput
from igcnas.evaluators.timing import Timing, time_calls
from igcnas.models.onnx_export import cpu_name, export_onnx, ort_session
from igcnas.search_space.config import NetworkConfig

__all__ = ["RUNTIMES", "TURN_GROUP", "Fingerprint", "OrtRunner", "Runner", "TorchRunner", "measure_network_ms",
           "measure_networks", "measure_networks_ms", "onnx_bytes", "runtime_runner", "time_modules"]

RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """Where and how a table's figures were measured; two tables compare only when these are equal."""

    cpu: str
    cores: int
    runtime: str
    runtime_version: str
    threads: int
    batch: int
    input_size: int
    in_channels: int

    @classmethod
    def here(cls, *, runtime: str, threads: int, batch: int, input_size: int, in_channels: int) -> Fingerprint:
        return cls(cpu=cpu_name(), cores=os.cpu_count() or 1, runtime=runtime,
                   runtime_version=runtime_runner(runtime, threads=threads).version, threads=threads, batch=batch,
                   input_size=input_size, in_channels=in_channels)

    def differences(self, other: Fingerprint) -> list[str]:
        """``field: mine != theirs`` for each field that differs."""
        return [f"{name} {value!r} != {getattr(other, name)!r}" for name, value in asdict(self).items()
                if getattr(other, name) != value]

    def describe(self) -> str:
        return (f"{self.runtime} {self.runtime_version}, {self.threads} thread(s), batch {self.batch}, "
                f"{self.in_channels}x{self.input_size}x{self.input_size} input, {self.cpu} ({self.cores} cores)")


class Runner(Protocol):
    """Runs a module on one runtime with a fixed number of threads: :meth:`prepare` gives the call to time.

    Timing itself is :mod:`igcnas.evaluators.timing`'s, the same for every runtime.
    """

    name: str
    version: str
    threads: int

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> Callable[[], Any]: ...


@dataclass
class TorchRunner:
    """PyTorch eager, inference mode, ``threads`` intra-op threads (set by the timer while it times)."""

    threads: int = 1
    name: str = "torch"
    version: str = field(default_factory=lambda: torch.__version__)

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> Callable[[], Any]:
        module.eval()
        x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))

        def call() -> None:
            with torch.inference_mode():
                module(x)
        return call


def onnx_bytes(module: nn.Module, input_shape: tuple[int, ...], batch: int) -> bytes:
    """``module`` (eval mode) as an ONNX model for batches of ``batch`` (:func:`export_onnx`), as bytes.

    The TorchScript-based exporter at a fixed batch: a part exports in about 0.2 s against 0.6-1 s with
    the dynamo exporter (1,400 parts: minutes instead of a quarter of an hour), and with the batch fixed
    ONNX Runtime folds the shape arithmetic of the channel shuffles, so the graph runs as fast as the
    dynamo export with a dynamic batch that ``igc-nas pick`` writes (measured on six networks of every
    family at batch 1: within 4% of each other, where the TorchScript export with a dynamic batch was up
    to 70% slower on the shuffle families).
    """
    with tempfile.TemporaryDirectory(prefix="igcnas-part-") as folder:
        path = export_onnx(module, Path(folder) / "part.onnx", input_shape, opset=17, exporter="torchscript",
                           batch=batch, output_name="out")
        return path.read_bytes()


@dataclass
class OrtRunner:
    """ONNX Runtime on the CPU: ``threads`` intra-op threads, sequential, all graph optimisations."""

    threads: int = 1
    name: str = "onnxruntime"
    version: str = ""

    def __post_init__(self) -> None:
        from igcnas.models.onnx_export import require_onnx

        require_onnx()
        import onnxruntime

        self.version = onnxruntime.__version__

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> Callable[[], Any]:
        session = ort_session(onnx_bytes(module.eval(), input_shape, batch), threads=self.threads)
        feed = {"images": np.random.default_rng(0).standard_normal((batch, *input_shape), dtype=np.float32)}
        return lambda: session.run(None, feed)


def runtime_runner(runtime: str, *, threads: int) -> Runner:
    if runtime not in RUNTIMES:
        raise BadInput(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BadInput(f"--threads must be an integer >= 1, got {threads!r}")
    return TorchRunner(threads=threads) if runtime == "torch" else OrtRunner(threads=threads)


# Calls prepared and timed in turns at once: enough for a slow phase to be shared among many parts, few
# enough that ONNX Runtime sessions (a few MB each) do not pile up.
TURN_GROUP = 64


def time_modules(runner: Runner, items: Sequence[tuple[nn.Module, tuple[int, ...]]], batch: int, *,
                 progress: Callable[[int, int], None] | None = None) -> list[Timing]:
    """Each ``(module, input_shape)`` timed on ``runner`` at ``batch`` (:func:`igcnas.evaluators.timing.time_calls`,
    in turns, :data:`TURN_GROUP` at a time); modules are left in eval mode."""
    out: list[Timing] = []
    threads = runner.threads if runner.name == "torch" else None
    for start in range(0, len(items), TURN_GROUP):
        group = items[start:start + TURN_GROUP]
        out += time_calls([runner.prepare(module, shape, batch) for module, shape in group], threads=threads)
        if progress is not None:
            progress(len(out), len(items))
    return out


def measure_networks(configs: Sequence[NetworkConfig], fingerprint: Fingerprint,
                     models: Sequence[nn.Module] | None = None, *,
                     runner: Runner | None = None) -> list[Timing]:
    """Whole networks (deployed form, as designed) timed in turns on the fingerprint's runtime, threads, batch."""
    from igcnas.evaluators.measured_costs import as_designed
    from igcnas.models import build_model

    if models is None:
        models = [build_model(config, seed=0, form="deployed") for config in configs]
    runner = runner or runtime_runner(fingerprint.runtime, threads=fingerprint.threads)
    with contextlib.ExitStack() as stack:
        for model in models:  # as the table's parts run (and as deployed), not the training fast path
            stack.enter_context(as_designed(model))
        return time_modules(runner, [(m, c.input_shape) for c, m in zip(configs, models, strict=True)],
                            fingerprint.batch)


def measure_network_ms(config: NetworkConfig, fingerprint: Fingerprint, model: nn.Module | None = None) -> float:
    """A whole network's latency on the fingerprint's runtime, threads and batch (deployed form)."""
    return measure_networks([config], fingerprint, None if model is None else [model])[0].ms


def measure_networks_ms(configs: list[NetworkConfig], fingerprint: Fingerprint) -> list[float]:
    """:func:`measure_networks`' figures in milliseconds."""
    return [t.ms for t in measure_networks(configs, fingerprint)]

