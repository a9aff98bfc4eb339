"""How one trial trains, as plain data (no torch), so that options and the command line stay light."""

from __future__ import annotations

import re
from dataclasses import dataclass

from igcnas.errors import BadInput

__all__ = ["TrainSettings", "STRUCTURED_MODES", "PRECISIONS", "DEVICE_CHOICES", "DEVICE_NAME", "CONCRETE_DEVICE", "RECORDED_SETTINGS", "recorded_settings",
           "settings_from_record"]

# Training devices and precisions (evaluators/device.py resolves them; kept here, torch-free, so that
# options and the command line can name them without importing torch).
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
# The device grammar, said once: one device (cpu, mps, cuda:N; group 1 the CUDA index), and what --device
# takes (those, "auto" and a bare "cuda"). Both fullmatch lower-cased text.
CONCRETE_DEVICE = re.compile(r"cpu|mps|cuda:(\d+)")
DEVICE_NAME = re.compile(rf"auto|cuda|{CONCRETE_DEVICE.pattern}")
PRECISIONS = ("fp32", "bf16", "fp16")

# How structured stages (Structured Convolutions) train: "regularised" trains full kernels with the
# structural regulariser and decomposes them after training; "direct" trains the small kernels themselves.
STRUCTURED_MODES = ("regularised", "direct")


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How one trial trains. The defaults are the search's defaults (``igc-nas search`` takes them from here).

    ``model_form`` says how a network with structured stages is built for training.
    """

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
    fast: bool = True  # heap-kept buffers, and the training path (plain or a faster variant) chosen by timing here
    time_limit_s: float | None = None  # wall time of training before the trial is failed
    memory_limit_mb: float | None = None  # resident-memory growth during training before the trial is failed
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps (evaluators/device.py resolves it)
    precision: str | None = None  # fp32, bf16, fp16; None: bf16 on CUDA devices that support it, else fp32
    structured_mode: str = "regularised"  # one of STRUCTURED_MODES; only networks with structured stages
    # Weight of the structural regulariser ("regularised" mode; the penalty is the kernels' mean relative
    # squared distance to their structure). Large because searches train briefly: on digits, 4 epochs,
    # lambda 0.1 / 1 / 10 / 100 gave projected accuracy 0.24 / 0.18 / 0.34 / 0.85 (full kernels 0.97 /
    # 0.97 / 0.95 / 0.88).
    structure_lambda: float = 100.0
    # Also measure, after every epoch, the validation accuracy with BatchNorm statistics re-estimated
    # (``TrainResult.recalibrated_curve``): structured networks are always evaluated that way, plain ones
    # are not, and whether they should be is measured on the long-training ground truth (issue 21). The
    # running statistics are restored afterwards, so the training and the plain curve are unchanged.
    recalibrated_curve: bool = False
    # Re-estimate BatchNorm statistics before every evaluation of a plain network too (each epoch, so every
    # rung, and the end), as structured networks always are; the trained network keeps them. On: on the
    # long-training ground truth (bench/fidelity.py) early accuracy ranks long accuracy far better so (epoch 2
    # Spearman 0.45 against 0.16), and a rung on it stops 6% of the long front instead of 31%.
    recalibrate_plain: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BadInput(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadInput(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
        if self.structured_mode not in STRUCTURED_MODES:
            raise BadInput(f"structured_mode must be one of {', '.join(STRUCTURED_MODES)}, "
                           f"got {self.structured_mode!r}")
        if not self.structure_lambda >= 0:
            raise BadInput(f"structure_lambda must be >= 0, got {self.structure_lambda}")

    @property
    def model_form(self) -> str:
        """``build_model``'s form: full kernels to regularise, or the deployed modules trained directly."""
        return "deployed" if self.structured_mode == "direct" else "train"


# TrainSettings fields a search records in its evaluation record beside epochs, batch and lr, which a later
# training of its networks (igc-nas pick --retrain, igc-nas refine) takes over.
RECORDED_SETTINGS = ("structured_mode", "structure_lambda", "recalibrate_plain")
# What a record made before a setting was recorded had: plain networks were never re-estimated then, whatever
# today's default is. A setting missing here and from the record takes today's default.
BEFORE_RECORDED = {"recalibrate_plain": False}


def recorded_settings(record: dict[str, object]) -> dict[str, object]:
    """The TrainSettings keyword arguments a later training of a study's networks takes from its search's
    evaluation record, so that it trains and evaluates them as the search did."""
    out = {k: record[k] for k in RECORDED_SETTINGS if k in record}
    return {**{k: v for k, v in BEFORE_RECORDED.items() if k not in out}, **out}


def settings_from_record(record: dict[str, object], *, epochs: int, seed: int, **overrides: object) -> TrainSettings:
    """How a later training of a study's networks (pick --retrain, refine) trains: the search's batch size,
    learning rate and recorded settings, for ``epochs`` with ``seed``, plus what the caller sets itself."""
    return TrainSettings(epochs=epochs, batch_size=int(record["batch_size"]), lr=float(record["lr"]), seed=seed,
                         **recorded_settings(record), **overrides)
