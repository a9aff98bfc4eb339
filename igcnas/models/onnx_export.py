"""ONNX export of networks (or single units) and its check against PyTorch with ONNX Runtime.

``onnx``, ``onnxscript`` and ``onnxruntime`` are the optional extra ``igc-nas[onnx]``: nothing here
imports them before a function needs them, so the rest of the package works without them.

Exporter choice (measured with torch 2.13, onnxruntime 1.32, one CPU thread, the small two-stage
test networks of every family): both ``torch.onnx.export`` paths export every block family (and
the deployed form of Structured Convolutions) correctly. The TorchScript exporter
(``dynamo=False``) is 5-30x faster to run (0.01-0.1 s per block, 0.1-1 s per network, against
0.6-1.4 s and 1.5-3.5 s), but it records every ``x.shape`` read of a channel shuffle as a
Shape/Gather/Concat subgraph that ONNX Runtime cannot fold once the batch is dynamic. The
``torch.export`` exporter (``dynamo=True``) writes those reshapes with constant channel counts, and
the shuffle families then run 15-25% faster at batch 1 and up to 10% at batch 32 (IGC-V2: 0.118
against 0.148 ms; IGC-V2*: 0.130 against 0.174 ms). Since what this package measures is the speed
of the interleaved blocks, a slower export beats a graph that adds latency the network does not
have, so ``dynamo`` is the default; ``exporter="torchscript"`` stays available for bulk exports
where seconds per file matter more than the shuffles' overhead.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import logging
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from igcnas.errors import BadInput

__all__ = ["ONNX_TOLERANCE", "OnnxCheck", "onnx_available", "require_onnx", "export_onnx", "ort_session",
           "check_onnx", "cpu_name", "report_lines"]

log = logging.getLogger(__name__)

# A faithful export differs from PyTorch only by float32 rounding in a different operation order (and
# BatchNorm folded into the convolutions): far below this on logits of order 1-10.
ONNX_TOLERANCE = 1e-4
_MODULES = ("onnx", "onnxscript", "onnxruntime")
_INSTALL = "pip install 'igc-nas[onnx]'"
# The batch sizes the export's check reports ONNX Runtime latency at.
LATENCY_BATCHES = (1, 32)
# torch's exporter warns once per process that torchvision's detection operators cannot be registered;
# no network here uses them, so the warning is only noise on the terminal of `igc-nas pick`.
_NOISY_LOGGER = "torch.onnx._internal.exporter._registration"
_DYNAMO_MIN_OPSET = 18


def onnx_available() -> bool:
    """Whether the ``[onnx]`` extra is installed (found on the path; nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in _MODULES)


def require_onnx() -> None:
    """One-line ``BadInput`` naming the install command when ONNX export is asked for but not installed."""
    missing = [name for name in _MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInput(f"ONNX export needs {', '.join(missing)} (not installed): {_INSTALL}")


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, int, int], *, opset: int | None = None,
                exporter: Literal["dynamo", "torchscript"] = "dynamo", input_name: str = "images",
                output_name: str = "logits", batch: int | None = None) -> Path:
    """Export ``model`` (run in eval mode) for inputs ``(batch, *input_shape)``, the batch dynamic unless given.

    A fixed ``batch`` lets ONNX Runtime fold every shape computation (latency tables time parts that way).

    The file is self-contained (weights inside, no external data file). Works for any module with
    one 4-D input and one output, so single units can be exported for latency tables too; name
    their tensors with ``input_name``/``output_name``. ``opset`` None takes the exporter's default
    (20 with torch 2.13); the dynamo exporter writes 18 or newer.
    See the module docstring for why ``dynamo`` is the default exporter.
    """
    require_onnx()
    if exporter not in ("dynamo", "torchscript"):
        raise BadInput(f"exporter must be dynamo or torchscript, got {exporter!r}")
    if exporter == "dynamo" and opset is not None and opset < _DYNAMO_MIN_OPSET:
        raise BadInput(f"the dynamo exporter writes opset {_DYNAMO_MIN_OPSET} or newer (asked for {opset} it logs a "
                       "failed conversion and keeps 18); use exporter='torchscript' for older opsets")
    if len(input_shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in input_shape):
        raise BadInput(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise BadInput(f"batch must be a positive integer or None (dynamic), got {batch!r}")
    path = Path(path)
    # Batch 2, not 1, when dynamic: a size-1 dimension would be specialised to a constant by torch.export.
    example = torch.zeros(batch or 2, *input_shape, device=_device_of(model))
    names: dict[str, Any] = {"input_names": [input_name], "output_names": [output_name], "opset_version": opset}
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    noisy = logging.getLogger(_NOISY_LOGGER)
    noisy_level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # Deprecation notices about torch's own internals (and the TorchScript exporter's note that
            # it cannot fold strided slices): nothing a caller can act on.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            if exporter == "dynamo":
                dynamic = {} if batch else {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
                torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                                  **dynamic, **names)
            else:
                dynamic = {} if batch else {"dynamic_axes": {input_name: {0: "batch"}, output_name: {0: "batch"}}}
                torch.onnx.export(model, (example,), str(path), dynamo=False, **dynamic, **names)
    finally:
        noisy.setLevel(noisy_level)
        model.train(was_training)
    log.debug("exported %s to %s with the %s exporter in %.2f s", type(model).__name__, path, exporter,
              time.perf_counter() - start)
    return path


def _device_of(model: nn.Module) -> torch.device:
    """Where the module's tensors live (CPU for one without any), so example inputs can go there."""
    return next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device


def ort_session(path: str | Path | bytes, *, threads: int = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU: ``threads`` intra-op threads, sequential, all optimisations.

    ``path`` is an ONNX file, or a serialised model (bytes). One inter-op thread and sequential
    execution so that ``threads`` alone sets the parallelism a latency is measured with; only errors
    are logged (ONNX Runtime's notes about the graph optimiser's choices are not actionable here).
    """
    require_onnx()
    import onnxruntime as ort

    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise BadInput(f"threads must be a positive integer, got {threads!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows), for latency reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class OnnxCheck:
    """How an ONNX file's outputs compare with PyTorch's on one batch, and its ONNX Runtime latency."""

    max_abs_diff: float
    top1_agreement: float
    batch: int
    ort_version: str
    threads: int
    cpu: str
    latency_ms: dict[int, float] = field(default_factory=dict)  # batch size -> median milliseconds

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= ONNX_TOLERANCE and self.top1_agreement == 1.0


def check_onnx(model: nn.Module, path: str | Path, images: torch.Tensor, *, threads: int = 1) -> OnnxCheck:
    """Run the float32 batch ``images`` through ``model`` (eval) and the ONNX file; time ONNX Runtime.

    ``images`` must already be what the model sees (normalised). The input is fed by position, so
    any input name works. Latency at batch 1 and 32 on random inputs of the same shape, by the project's
    one timer (:mod:`igcnas.evaluators.timing`).
    """
    require_onnx()
    import onnxruntime as ort

    if images.dim() != 4 or len(images) == 0:
        raise BadInput(f"images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    session = ort_session(path, threads=threads)
    feed = session.get_inputs()[0].name
    x = images.detach().to("cpu", torch.float32).contiguous()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = model(x.to(_device_of(model))).float().cpu()
    finally:
        model.train(was_training)
    got = torch.from_numpy(session.run(None, {feed: x.numpy()})[0])
    if got.shape != expected.shape:
        raise RuntimeError(f"ONNX Runtime returned shape {tuple(got.shape)}, PyTorch {tuple(expected.shape)}")
    max_abs_diff = float((got - expected).abs().max())
    flat_got, flat_expected = got.reshape(len(x), -1), expected.reshape(len(x), -1)
    agreement = float((flat_got.argmax(1) == flat_expected.argmax(1)).float().mean())
    from igcnas.evaluators.timing import time_call

    generator = torch.Generator().manual_seed(0)
    latency: dict[int, float] = {}
    for batch in LATENCY_BATCHES:
        sample = {feed: torch.randn(batch, *x.shape[1:], generator=generator).numpy()}
        latency[batch] = time_call(lambda sample=sample: session.run(None, sample)).ms
    return OnnxCheck(max_abs_diff, agreement, len(x), ort.__version__, threads, cpu_name(), latency)


def report_lines(check: OnnxCheck, *, file_name: str = "model.onnx", input_name: str = "images") -> list[str]:
    """Markdown bullet lines describing ``check`` (for an export's report)."""
    verdict = ("matches PyTorch" if check.passed else
               f"**DOES NOT MATCH PyTorch** (allowed max difference {ONNX_TOLERANCE:g}, top-1 agreement 1.0): "
               "a defect of the export, please report it")
    return [
        f"- ONNX: `{file_name}` (dynamic batch, input `{input_name}`), {verdict}",
        f"- ONNX Runtime {check.ort_version}, threads: {check.threads}, CPU: {check.cpu}",
        f"- max |ONNX Runtime - PyTorch| of logits: {check.max_abs_diff:.2e} on {check.batch} validation images",
        f"- top-1 agreement ONNX Runtime vs PyTorch: {check.top1_agreement:.4f}",
        "- ONNX Runtime latency: " + ", ".join(f"batch {b}: {ms:.3f} ms"
                                                        for b, ms in sorted(check.latency_ms.items())),
        f"- load it with `onnxruntime.InferenceSession(\"DIR/{file_name}\")`, run "
        f"`session.run(None, {{\"{input_name}\": x}})` with x float32 (N, C, H, W), normalised like the data",
    ]
