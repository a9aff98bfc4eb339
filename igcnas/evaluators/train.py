"""Training and evaluation of one network at a given fidelity (number of epochs).

SGD with Nesterov momentum 0.9 and weight decay 1e-4 as in the IGC-V2 paper;
the paper's step schedule (x0.1 at 50%, 75%, 87.5% of 400 epochs) is replaced
by a cosine decay over the run's own length, which fits any fidelity from one
epoch upward. Seeds fix initialisation, data order and augmentation.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from igcnas.evaluators.data import DataSplits, augment_batch, iterate_batches

__all__ = ["TrainSettings", "TrainResult", "TrialDiverged", "TrialLimitExceeded", "train_model", "evaluate", "EpochCallback"]

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, float], None]  # (epoch, validation accuracy); may raise to stop


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is failed with this reason."""


class TrialLimitExceeded(RuntimeError):
    """The trial ran past its time or memory limit; the trial is failed with this reason."""


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


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
    memory_limit_mb: float | None = None  # peak resident memory of the process before the trial is failed

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class TrainResult:
    val_accuracy: float
    curve: list[float] = field(default_factory=list)  # validation accuracy after each epoch
    train_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             memory_format: torch.memory_format = torch.contiguous_format) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for xb, yb in iterate_batches(x, y, batch_size):
        correct += int((model(xb.contiguous(memory_format=memory_format)).argmax(1) == yb).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def train_model(
    model: nn.Module,
    data: DataSplits,
    settings: TrainSettings,
    *,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train`` and report validation accuracy after every epoch."""
    previous_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    generator = torch.Generator().manual_seed(settings.seed)
    memory_format = torch.contiguous_format
    if settings.fast:
        from igcnas.models.fast import prepare_for_training

        prepare_for_training(model, (data.in_channels, data.input_size, data.input_size),
                             batch=min(settings.batch_size, len(data.train_x)))
        memory_format = torch.channels_last
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay, nesterov=settings.nesterov)
    n = len(data.train_x)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    if settings.max_batches_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, settings.max_batches_per_epoch)
    total_steps = max(steps_per_epoch * settings.epochs, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    result = TrainResult(val_accuracy=0.0)
    bar = None
    if settings.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc="training", unit="batch", file=sys.stderr, leave=False)
    start = time.perf_counter()
    images = 0
    try:
        model.train()
        for epoch in range(settings.epochs):
            running, batches = 0.0, 0
            for xb, yb in iterate_batches(data.train_x, data.train_y, settings.batch_size, generator=generator):
                if batches >= steps_per_epoch:
                    break
                if data.augment:
                    xb = augment_batch(xb, generator)
                xb = xb.contiguous(memory_format=memory_format)
                loss = F.cross_entropy(model(xb), yb)
                if not torch.isfinite(loss):
                    raise TrialDiverged(f"loss became {loss.item()} at epoch {epoch + 1}, batch {batches + 1}")
                if settings.time_limit_s is not None and time.perf_counter() - start > settings.time_limit_s:
                    raise TrialLimitExceeded(f"time limit of {settings.time_limit_s:g} s exceeded at epoch "
                                             f"{epoch + 1}, batch {batches + 1}")
                if settings.memory_limit_mb is not None and _peak_rss_mb() > settings.memory_limit_mb:
                    raise TrialLimitExceeded(f"memory limit of {settings.memory_limit_mb:g} MB exceeded "
                                             f"(peak {_peak_rss_mb():.0f} MB)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += loss.item()
                batches += 1
                images += len(xb)
                if bar is not None:
                    bar.update(1)
            accuracy = evaluate(model, data.val_x, data.val_y, memory_format=memory_format)
            result.curve.append(accuracy)
            result.train_loss.append(running / max(batches, 1))
            result.val_accuracy = accuracy
            log.debug("epoch %d: loss %.4f, val accuracy %.4f", epoch + 1, result.train_loss[-1], accuracy)
            if on_epoch is not None:
                on_epoch(epoch + 1, accuracy)
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(previous_threads)
    result.seconds = time.perf_counter() - start
    result.images_per_second = images / result.seconds if result.seconds > 0 else 0.0
    return result
