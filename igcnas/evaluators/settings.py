"""How one trial trains, as plain data (no torch), so that options and the command line stay light."""

from __future__ import annotations

from dataclasses import dataclass

from igcnas.errors import BadInput

__all__ = ["TrainSettings"]


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How one trial trains. The defaults are the search's defaults (``igc-nas search`` takes them from here)."""

    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    seed: int = 0
    threads: int | None = None  # torch.set_num_threads for the run; None leaves it alone
    progress: bool = False
    max_batches_per_epoch: int | None = None  # cap for tiny test budgets
    fast: bool = True  # channels_last, chain/composed chosen by timing, heap-kept buffers (same function)
    time_limit_s: float | None = None  # wall time of training before the trial is failed
    memory_limit_mb: float | None = None  # resident-memory growth during training before the trial is failed

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BadInput(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadInput(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
