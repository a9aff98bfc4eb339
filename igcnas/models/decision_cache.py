"""Where decisions made by timing are kept: per machine and network, in memory and in a file per user.

A decision timed on one machine says nothing about another (the fast path's choices flipped between an AMD
EPYC and an Intel Xeon), so every key starts with the machine: the CPU model (or the GPU's name), the
PyTorch version, the device type and the thread count. The network part is the module structure (not the
weights), the input shape, the batch and the dtype; or, for decisions short trainings share, the network's
family in place of its structure (:func:`kind_key`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from igcnas.files import atomic_write_text

__all__ = ["DecisionCache", "decision_key", "default_cache", "kind_key", "machine_key"]

log = logging.getLogger(__name__)


class DecisionCache:
    """JSON-able entries by key, in memory and (unless ``path`` is None) in a JSON file this user's processes share.

    The file is read again before each write and the new entry merged in, so processes deciding for
    different networks keep each other's entries; two writing at the same instant may lose one (it is then
    timed again). Written whole or not at all (:func:`igcnas.files.atomic_write_text`); an unreadable file
    counts as empty.
    """

    def __init__(self, *, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict] = {}
        self._loaded = False

    @classmethod
    def default(cls) -> "DecisionCache":
        """``$XDG_CACHE_HOME/igcnas/training-paths.json``; memory only when IGCNAS_TRAINING_PATH_CACHE=0."""
        if os.environ.get("IGCNAS_TRAINING_PATH_CACHE", "1") == "0":
            return cls(path=None)
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(path=base / "igcnas" / "training-paths.json")

    def _read_file(self) -> dict[str, dict]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def get(self, key: str) -> dict | None:
        if not self._loaded:
            self._entries = {**self._read_file(), **self._entries}
            self._loaded = True
        return self._entries.get(key)

    def put(self, key: str, entry: dict) -> None:
        self._entries[key] = entry
        if self.path is None:
            return
        merged = {**self._read_file(), key: entry}
        try:
            atomic_write_text(self.path, json.dumps(merged, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only home: the decision holds for this process only
            log.debug("decisions not written to %s: %s", self.path, exc)


_DEFAULT: dict[str, DecisionCache] = {}


def default_cache() -> DecisionCache:
    """This process's :meth:`DecisionCache.default` (one per cache file, made on first use)."""
    cache = DecisionCache.default()
    return _DEFAULT.setdefault(str(cache.path), cache)


def machine_key(device: torch.device) -> str:
    """The machine a timing belongs to: CPU model or GPU name, PyTorch version, device type, threads."""
    from igcnas.models.onnx_export import cpu_name

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return f"{where} | torch {torch.__version__} | {device.type} | {torch.get_num_threads()} threads"


def decision_key(model: nn.Module, input_shape: tuple[int, int, int], batch: int, device: torch.device,
                 precision: str = "fp32") -> str:
    """The machine and the network a decision belongs to (the structure, not the weights)."""
    dtype = next(model.parameters()).dtype
    structure = hashlib.sha256(repr(model).encode("utf-8")).hexdigest()[:16]
    return f"{machine_key(device)} | {structure} | {tuple(input_shape)} x {batch} | {dtype} {precision}"


def kind_key(model: nn.Module, input_shape: tuple[int, int, int], batch: int, device: torch.device,
             precision: str = "fp32") -> str:
    """The machine and the kind of network, for decisions that short trainings share: its family and the
    kinds of convolution it is built of (a structured network in training form, or deployed, is another kind
    than a plain one of the family), input shape, batch, dtype and precision. A search's networks of one kind
    differ in widths and depths, not in what runs fastest."""
    dtype = next(model.parameters()).dtype
    family = getattr(getattr(model, "config", None), "family", None) or type(model).__name__
    parts = ",".join(sorted({type(m).__name__ for m in model.modules() if "Conv" in type(m).__name__}))
    modules = hashlib.sha256(parts.encode("utf-8")).hexdigest()[:8]
    return f"{machine_key(device)} | kind {family} {modules} | {tuple(input_shape)} x {batch} | {dtype} {precision}"
