"""Loading an exported model directory (``config.json`` + ``model.pt``) as a ready module.

Weights are read with ``torch.load(weights_only=True)``: a file that is not a
plain state dict is refused, never unpickled as arbitrary objects.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from igcnas.models.network import IGCNet, build_model
from igcnas.search_space.config_io import load_config
from igcnas.errors import BadInput

__all__ = ["load", "load_state_dict_file"]


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``; ValueError naming the file when it is anything else."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{str(path)!r} is not a state dict saved with torch.save: {reason}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in state.items()):
        raise BadInput(f"{str(path)!r} is not a state dict (a mapping of parameter names to tensors)")
    return state


def load(directory: str | Path) -> IGCNet:
    """Rebuild the exported network in ``directory`` in eval mode."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"export directory {str(directory)!r} does not exist")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise BadInput(f"export directory {str(directory)!r} has no config.json")
    config = load_config(config_path)
    state = load_state_dict_file(directory / "model.pt")
    model = build_model(config, seed=None, form="deployed")  # exports hold the deployed form
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise BadInput(f"model.pt in {str(directory)!r} does not match config.json: "
                         f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    return model.eval()
