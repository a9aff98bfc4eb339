"""Where and in which precision a trial trains: device and precision resolved once, with clear errors.

``--device auto`` means CUDA when this process sees a CUDA device, else the CPU.
``--precision`` is ``fp32``, ``bf16`` or ``fp16`` (autocast; fp16 trains with a
gradient scaler so that small gradients do not flush to zero); left unset it is
bf16 on CUDA devices that support it and fp32 everywhere else, the CPU included
(the CPU fast path, composed kernels chosen by timing, is measured in fp32).
Latency is not measured here: it stays a deployment measurement on the CPU
(see :mod:`igcnas.evaluators.measured_costs`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from igcnas.errors import BadInput
from igcnas.evaluators.settings import CONCRETE_DEVICE, DEVICE_CHOICES, DEVICE_NAME, PRECISIONS

__all__ = ["DEVICE_CHOICES", "PRECISIONS", "resolve_device", "resolve_precision", "autocast", "grad_scaler"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``spec`` names; BadInput (one line) when it is malformed or not available here."""
    if isinstance(spec, torch.device):
        return spec
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise BadInput("--device mps: Apple's MPS backend is not available on this machine")
        return torch.device("mps")
    if not DEVICE_NAME.fullmatch(text):
        raise BadInput(f"--device must be one of {DEVICE_CHOICES}, got {spec!r}")
    match = CONCRETE_DEVICE.fullmatch(text)  # cuda:N, or None for a bare "cuda"
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise BadInput(f"--device {text}: no CUDA device is available to this process (torch {torch.__version__}, "
                       f"{build}); use --device cpu or auto")
    index = int(match.group(1)) if match else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise BadInput(f"--device {text}: this machine has {count} CUDA device(s), indices 0..{count - 1}")
    return torch.device("cuda", index)


def resolve_precision(spec: str | None, device: torch.device) -> str:
    """``spec`` checked, or the default for ``device`` (bf16 on CUDA with bf16 support, else fp32)."""
    if spec is None or spec == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if spec not in PRECISIONS:
        raise BadInput(f"--precision must be one of {', '.join(PRECISIONS)}, got {spec!r}")
    if spec == "fp16" and device.type == "cpu":
        raise BadInput("--precision fp16 is for GPUs; on the CPU use bf16 or fp32")
    return spec


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for the forward pass (nothing for fp32)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def grad_scaler(device: torch.device, precision: str) -> Any:
    """A gradient scaler for fp16 (None otherwise: bf16 has fp32's exponent range)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
