"""Training and evaluation of one network at a given fidelity (number of epochs).

SGD with Nesterov momentum 0.9 and weight decay 1e-4 as in the IGC-V2 paper;
the paper's step schedule (x0.1 at 50%, 75%, 87.5% of 400 epochs) is replaced
by a cosine decay over the run's own length, which fits any fidelity from one
epoch upward. Seeds fix initialisation, data order and augmentation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from igcnas.evaluators.data_splits import DataSplits
from igcnas.evaluators.settings import TrainSettings

__all__ = ["TrainSettings", "TrainResult", "recalibrate_batchnorm", "evaluate_split", "TrialDiverged", "TrialLimitExceeded", "train_model", "EpochCallback"]

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, float], None]  # (epoch, validation accuracy); may raise to stop


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is failed with this reason."""


class TrialLimitExceeded(RuntimeError):
    """The trial ran past its time or memory limit; the trial is failed with this reason."""


def current_rss_mb() -> float:
    """The process's resident memory now (not its peak), in MB.

    The per-trial memory limit compares the growth of this figure since the trial started: the
    process's peak (``ru_maxrss``) never comes down, so after one large trial every later trial would
    be judged by it. Linux's /proc/self/statm is read directly (microseconds); elsewhere psutil.
    """
    try:
        with open("/proc/self/statm", "rb") as handle:
            resident_pages = int(handle.read().split()[1])
        return resident_pages * _PAGE_SIZE / 2**20
    except OSError:  # not Linux
        import psutil

        return psutil.Process().memory_info().rss / 2**20


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class TrainResult:
    val_accuracy: float
    curve: list[float] = field(default_factory=list)  # validation accuracy after each epoch
    train_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0  # the whole call: set-up (deciding the training path), training, evaluation
    train_seconds: float = 0.0  # the training batches only
    images_per_second: float = 0.0  # training images per second of train_seconds
    # Structured stages trained with the regulariser: the accuracies above are the projected (deployable)
    # network's; this is the full-kernel network's final accuracy, and the gap = unprojected - projected.
    # With TrainSettings.recalibrated_curve: validation accuracy after each epoch with BatchNorm statistics
    # re-estimated first (for structured networks the same as ``curve``, which is always measured so).
    recalibrated_curve: list[float] = field(default_factory=list)
    unprojected_accuracy: float | None = None
    projection_gap: float | None = None
    device: str = "cpu"  # where it trained
    precision: str = "fp32"


@torch.no_grad()
def evaluate_split(model: nn.Module, data: DataSplits, split: str = "val", *, batch_size: int = 256,
                   device: torch.device | None = None, precision: str = "fp32",
                   memory_format: torch.memory_format = torch.contiguous_format) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on one split of ``data``, batches normalised on ``device``."""
    from igcnas.evaluators.device import autocast

    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    correct = total = 0
    with autocast(device, precision):
        for xb, yb in data.eval_batches(split, batch_size, device=device):
            correct += int((model(xb.contiguous(memory_format=memory_format)).argmax(1) == yb).sum())
            total += len(yb)
    model.train(was_training)
    return correct / max(total, 1)


# Batches of (unaugmented) training images that re-estimate BatchNorm statistics before a structured
# network is evaluated (see recalibrate_batchnorm).
RECALIBRATION_BATCHES = 32


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: DataSplits, *, batch_size: int,
                          max_batches: int = RECALIBRATION_BATCHES, device: torch.device | None = None,
                          memory_format: torch.memory_format = torch.contiguous_format) -> None:
    """Re-estimate every BatchNorm's running statistics from scratch on the first training batches.

    Why: projecting kernels onto their structure (or decomposing them) changes every activation's
    statistics, so the running statistics gathered while training the full kernels no longer fit;
    measured on digits, a projected IGC-V2 network scored chance (0.10) with them and 0.87 after
    re-estimation. Short trainings of structured networks also leave running statistics that lag the
    weights. Plain networks are never recalibrated (their results stay as they were).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    try:
        for xb, _ in data.eval_batches("train", batch_size, device=device, max_batches=max_batches):
            model(xb.contiguous(memory_format=memory_format))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def recalibrated_accuracy(model: nn.Module, recalibrate: Callable[[nn.Module], None],
                          validate: Callable[[], float]) -> float:
    """Validation accuracy with BatchNorm statistics re-estimated, leaving the model's statistics as they were."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in norms if m.track_running_stats and m.running_mean is not None]
    try:
        recalibrate(model)
        return validate()
    finally:
        tracked = [m for m in norms if m.track_running_stats and m.running_mean is not None]
        for m, (mean, var, count) in zip(tracked, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


@dataclass
class _Run:
    """One training run's fixed parts, set up once: what trains where, how it steps, how an epoch is judged.

    ``structured``: the model holds Structured Convolutions in training form (full kernels): it is trained
    with the regulariser and judged on its projected weights. ``re_estimated``: judged with BatchNorm
    statistics re-estimated first, without projection (deployed structured modules always, plain networks
    when asked).
    """

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # what a training step calls: the model, or its chosen path
    data: DataSplits
    settings: TrainSettings
    device: torch.device
    precision: str
    memory_format: torch.memory_format
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler for fp16, else None
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    total_steps: int
    structured: bool
    re_estimated: bool
    previous_threads: int  # the caller's torch thread count, restored when the run ends

    def recalibrate(self, net: nn.Module) -> None:
        recalibrate_batchnorm(net, self.data, batch_size=self.settings.batch_size, device=self.device,
                              memory_format=self.memory_format)

    def validate(self) -> float:
        return evaluate_split(self.model, self.data, "val", device=self.device, precision=self.precision,
                              memory_format=self.memory_format)


def _set_up(model: nn.Module, data: DataSplits, settings: TrainSettings) -> _Run:
    """Threads, generator, device, fast path, optimiser and schedule, in the order seeded results depend on."""
    from igcnas.evaluators.device import grad_scaler, resolve_device, resolve_precision
    from igcnas.models.structured import SumPoolConv2d, structured_layers

    structured = bool(structured_layers(model))
    deployed_structure = any(isinstance(m, SumPoolConv2d) for m in model.modules())  # the "direct" mode
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    previous_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    generator = torch.Generator().manual_seed(settings.seed)  # on the CPU: the same draws on every device
    model.to(device)
    data = data.to(device)  # in-memory images move once, as uint8
    steps_per_epoch = math.ceil(data.n_train / settings.batch_size)
    if settings.max_batches_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, settings.max_batches_per_epoch)
    total_steps = max(steps_per_epoch * settings.epochs, 1)
    memory_format, forward = torch.contiguous_format, model
    if settings.fast:  # the path chosen by timing here for a training of this length (plain when short)
        from igcnas.models.training_path import prepare_for_training

        prepared = prepare_for_training(model, data.input_shape, batch=min(settings.batch_size, data.n_train),
                                        expected_steps=total_steps, device=device, precision=precision)
        memory_format, forward = prepared.memory_format, prepared
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay, nesterov=settings.nesterov)
    scaler = grad_scaler(device, precision)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    return _Run(model=model, forward=forward, data=data, settings=settings, device=device, precision=precision,
                memory_format=memory_format, generator=generator, optimizer=optimizer, scaler=scaler,
                scheduler=scheduler, steps_per_epoch=steps_per_epoch, total_steps=total_steps, structured=structured,
                re_estimated=deployed_structure or settings.recalibrate_plain, previous_threads=previous_threads)


def _check_limits(settings: TrainSettings, start: float, baseline_mb: float, epoch: int, batch: int) -> None:
    """TrialLimitExceeded once the run is past its wall time, or has grown the process past its memory limit.

    The memory limit is on what this trial adds to the process (threads of --n-jobs share it).
    """
    if settings.time_limit_s is not None and time.perf_counter() - start > settings.time_limit_s:
        raise TrialLimitExceeded(f"time limit of {settings.time_limit_s:g} s exceeded at epoch "
                                 f"{epoch + 1}, batch {batch + 1}")
    if settings.memory_limit_mb is not None:
        grown = current_rss_mb() - baseline_mb
        if grown > settings.memory_limit_mb:
            raise TrialLimitExceeded(f"memory limit of {settings.memory_limit_mb:g} MB exceeded: the "
                                     f"trial grew the process by {grown:.0f} MB")


def _step(run: _Run, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss`` (through the gradient scaler under fp16), then the schedule's."""
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    run.scheduler.step()


def _train_epoch(run: _Run, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], epoch: int, start: float,
                 baseline_mb: float, bar: Any) -> tuple[float, int, int]:
    """Train on ``batches`` (at most ``steps_per_epoch``); returns (summed loss, batches, images)."""
    from igcnas.evaluators.device import autocast
    from igcnas.models.structured import structural_penalty

    settings = run.settings
    running, steps, images = 0.0, 0, 0
    for xb, yb in batches:
        if steps >= run.steps_per_epoch:
            break
        xb = xb.contiguous(memory_format=run.memory_format)
        with autocast(run.device, run.precision):
            loss = F.cross_entropy(run.forward(xb), yb)
        if run.structured and settings.structure_lambda > 0:
            loss = loss + settings.structure_lambda * structural_penalty(run.model)
        value = loss.item()  # one sync per step: the divergence check needs it
        if not math.isfinite(value):
            raise TrialDiverged(f"loss became {value} at epoch {epoch + 1}, batch {steps + 1}")
        _check_limits(settings, start, baseline_mb, epoch, steps)
        _step(run, loss)
        running += value
        steps += 1
        images += len(xb)
        if bar is not None:
            bar.update(1)
    return running, steps, images


def _judge_epoch(run: _Run, result: TrainResult) -> float:
    """The epoch's validation accuracy: of the projected network for structured training, after BatchNorm
    re-estimation where the run asks for it; the recalibrated curve is recorded alongside when asked."""
    from igcnas.models.structured import projected

    model, settings = run.model, run.settings
    if run.structured:
        with projected(model):
            run.recalibrate(model)
            accuracy = run.validate()
    elif run.re_estimated:
        run.recalibrate(model)
        accuracy = run.validate()
    else:
        accuracy = run.validate()
        if settings.recalibrated_curve:
            result.recalibrated_curve.append(recalibrated_accuracy(model, run.recalibrate, run.validate))
    if settings.recalibrated_curve and (run.structured or run.re_estimated):
        result.recalibrated_curve.append(accuracy)
    return accuracy


def _finish_structured(run: _Run, result: TrainResult) -> None:
    """Record the full-kernel network's accuracy and the projection gap, and leave the projected network's
    BatchNorm statistics in the model: it is what is decomposed next."""
    from igcnas.models.structured import projected

    run.recalibrate(run.model)
    result.unprojected_accuracy = run.validate()
    result.projection_gap = result.unprojected_accuracy - result.val_accuracy
    with projected(run.model):
        run.recalibrate(run.model)


def _progress_bar(settings: TrainSettings, total_steps: int) -> Any:
    """A tqdm bar over the run's batches on stderr when ``settings.progress``, else None."""
    if not settings.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total_steps, desc="training", unit="batch", file=sys.stderr, leave=False)


def train_model(
    model: nn.Module,
    data: DataSplits,
    settings: TrainSettings,
    *,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train`` and report validation accuracy after every epoch.

    A model with Structured Convolutions in training form (full kernels) is trained with the
    structural regulariser (``settings.structure_lambda``), and every reported accuracy (each epoch,
    so every early-stopping rung, and the end) is measured on its projected weights: the network
    that decomposition deploys, not the one the optimiser holds.
    """
    start = time.perf_counter()  # deciding the training path (seconds to a minute for a long training) counts
    run = _set_up(model, data, settings)
    result = TrainResult(val_accuracy=0.0, device=str(run.device), precision=run.precision)
    bar = _progress_bar(settings, run.total_steps)
    baseline_mb = current_rss_mb()  # the limit is on what this trial adds (threads of --n-jobs share it)
    images, loop_seconds = 0, 0.0
    try:
        model.train()
        for epoch in range(settings.epochs):
            epoch_start = time.perf_counter()
            # closing: a streamed split's reader stops as soon as the epoch's last step is taken
            with contextlib.closing(run.data.train_batches(settings.batch_size, generator=run.generator,
                                                           device=run.device)) as batches:
                running, steps, seen = _train_epoch(run, batches, epoch, start, baseline_mb, bar)
            loop_seconds += time.perf_counter() - epoch_start
            images += seen
            accuracy = _judge_epoch(run, result)
            result.curve.append(accuracy)
            result.train_loss.append(running / max(steps, 1))
            result.val_accuracy = accuracy
            log.debug("epoch %d: loss %.4f, val accuracy %.4f", epoch + 1, result.train_loss[-1], accuracy)
            if on_epoch is not None:
                on_epoch(epoch + 1, accuracy)
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(run.previous_threads)
    if run.structured:
        _finish_structured(run, result)
    result.seconds = time.perf_counter() - start
    result.train_seconds = loop_seconds
    # Training speed: images over the time of the training batches only (evaluation excluded).
    result.images_per_second = images / loop_seconds if loop_seconds > 0 else 0.0
    return result
