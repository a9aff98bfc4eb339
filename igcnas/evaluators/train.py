"""Training and evaluation of one network at a given fidelity (number of epochs).

SGD with Nesterov momentum 0.9 and weight decay 1e-4 as in the IGC-V2 paper;
the paper's step schedule (x0.1 at 50%, 75%, 87.5% of 400 epochs) is replaced
by a cosine decay over the run's own length, which fits any fidelity from one
epoch upward. Seeds fix initialisation, data order and augmentation.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from igcnas.evaluators.data import DataSplits
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
    seconds: float = 0.0  # the whole call: training, evaluation, recalibration
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
    from igcnas.evaluators.device import autocast, grad_scaler, resolve_device, resolve_precision
    from igcnas.models.structured import SumPoolConv2d, projected, structural_penalty, structured_layers

    structured = bool(structured_layers(model))
    deployed_structure = any(isinstance(m, SumPoolConv2d) for m in model.modules())  # the "direct" mode
    # Evaluated with BatchNorm statistics re-estimated first, without projection: deployed structured modules
    # always, plain networks when asked (structured ones are projected first, below).
    re_estimated = deployed_structure or settings.recalibrate_plain
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    previous_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    generator = torch.Generator().manual_seed(settings.seed)  # on the CPU: the same draws on every device
    model.to(device)
    data = data.to(device)  # in-memory images move once, as uint8
    memory_format = torch.contiguous_format
    if settings.fast:
        from igcnas.models.fast import prepare_for_training

        prepare_for_training(model, data.input_shape,
                             batch=min(settings.batch_size, data.n_train), device=device)
        memory_format = torch.channels_last
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay, nesterov=settings.nesterov)
    scaler = grad_scaler(device, precision)
    steps_per_epoch = math.ceil(data.n_train / settings.batch_size)
    if settings.max_batches_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, settings.max_batches_per_epoch)
    total_steps = max(steps_per_epoch * settings.epochs, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    result = TrainResult(val_accuracy=0.0, device=str(device), precision=precision)

    def recalibrate(net: nn.Module) -> None:
        recalibrate_batchnorm(net, data, batch_size=settings.batch_size, device=device, memory_format=memory_format)

    def validate() -> float:
        return evaluate_split(model, data, "val", device=device, precision=precision, memory_format=memory_format)

    bar = None
    if settings.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc="training", unit="batch", file=sys.stderr, leave=False)
    start = time.perf_counter()
    baseline_mb = current_rss_mb()  # the limit is on what this trial adds (threads of --n-jobs share it)
    images, loop_seconds = 0, 0.0
    try:
        model.train()
        for epoch in range(settings.epochs):
            running, batches = 0.0, 0
            epoch_start = time.perf_counter()
            for xb, yb in data.train_batches(settings.batch_size, generator=generator, device=device):
                if batches >= steps_per_epoch:
                    break
                xb = xb.contiguous(memory_format=memory_format)
                with autocast(device, precision):
                    loss = F.cross_entropy(model(xb), yb)
                if structured and settings.structure_lambda > 0:
                    loss = loss + settings.structure_lambda * structural_penalty(model)
                value = loss.item()  # one sync per step: the divergence check needs it
                if not math.isfinite(value):
                    raise TrialDiverged(f"loss became {value} at epoch {epoch + 1}, batch {batches + 1}")
                if settings.time_limit_s is not None and time.perf_counter() - start > settings.time_limit_s:
                    raise TrialLimitExceeded(f"time limit of {settings.time_limit_s:g} s exceeded at epoch "
                                             f"{epoch + 1}, batch {batches + 1}")
                if settings.memory_limit_mb is not None:
                    grown = current_rss_mb() - baseline_mb
                    if grown > settings.memory_limit_mb:
                        raise TrialLimitExceeded(f"memory limit of {settings.memory_limit_mb:g} MB exceeded: the "
                                                 f"trial grew the process by {grown:.0f} MB")
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                scheduler.step()
                running += value
                batches += 1
                images += len(xb)
                if bar is not None:
                    bar.update(1)
            loop_seconds += time.perf_counter() - epoch_start
            if structured:
                with projected(model):
                    recalibrate(model)
                    accuracy = validate()
            elif re_estimated:
                recalibrate(model)
                accuracy = validate()
            else:
                accuracy = validate()
                if settings.recalibrated_curve:
                    result.recalibrated_curve.append(recalibrated_accuracy(model, recalibrate, validate))
            if settings.recalibrated_curve and (structured or re_estimated):
                result.recalibrated_curve.append(accuracy)
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
    if structured:
        recalibrate(model)
        result.unprojected_accuracy = validate()
        result.projection_gap = result.unprojected_accuracy - result.val_accuracy
        with projected(model):
            recalibrate(model)  # leave the statistics of the projected network: it is what is decomposed next
    result.seconds = time.perf_counter() - start
    result.train_seconds = loop_seconds
    # Training speed: images over the time of the training batches only (evaluation excluded).
    result.images_per_second = images / loop_seconds if loop_seconds > 0 else 0.0
    return result
