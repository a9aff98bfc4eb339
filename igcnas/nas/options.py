"""Everything ``igc-nas search`` takes, declared once.

Each field of :class:`SearchOptions` carries its command-line flag, help text
and group as metadata (see :func:`option`); ``igcnas.cli.search`` generates its
parser from these fields, so a new option is one field here. Validation
happens on construction and raises :class:`~igcnas.errors.BadInput` naming the
option and the allowed values.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from igcnas.errors import BadInput
from igcnas.evaluators.latency_fit import check_min_share
from igcnas.evaluators.settings import (CONCRETE_DEVICE, DEVICE_CHOICES, DEVICE_NAME, PRECISIONS, STRUCTURED_MODES,
                                       TrainSettings)
from igcnas.nas.early_stopping import RungSchedule, fidelity_key
from igcnas.nas.objectives import Objective, objectives_for
from igcnas.nas.samplers import SAMPLERS
from igcnas.nas.budget import Budget, parse_count
from igcnas.search_space.spec import DEFAULT_BLOCKS, DEFAULT_FAMILIES, DEFAULT_MAX_L

__all__ = ["SearchOptions", "BACKENDS", "option", "cli_fields"]

# The backends by name -> the module defining its BACKEND (nas/backends/); imported lazily, by name, so that
# `import igcnas.nas` never imports ray. The one list of backend names.
BACKENDS: dict[str, str] = {"optuna": "igcnas.nas.backends.optuna_backend", "ray": "igcnas.nas.backends.ray_backend"}
_TRAIN = TrainSettings()  # the trainer's defaults are the search's


@dataclass(frozen=True)
class CliSpec:
    """How a field appears on the command line."""

    help: str
    group: str
    flag: str | None = None  # default: --field-name
    kind: str = "value"  # value | append | nargs+ | store_true | store_false
    type: Callable[[str], Any] | None = None  # argparse type (int, float); None keeps the string
    parse: Callable[[str, str], Any] | None = None  # applied after parsing, with the flag (budgets)
    metavar: str | None = None

    def flag_for(self, name: str) -> str:
        """The flag of field ``name``: the declared one, or ``--name-with-dashes``."""
        return self.flag or _dashed(name)


def _dashed(name: str) -> str:
    return "--" + name.replace("_", "-")


def on_off(raw: str, flag: str) -> bool:
    """An on|off flag's value (a switch whose default may change, unlike store_true)."""
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise BadInput(f"{flag} must be one of on, off, got {raw!r}")
    return value == "on"


def parse_devices(raw: str, flag: str) -> tuple[str, ...]:
    """``0,1,3`` (CUDA indices) or explicit devices (``cuda:0,cuda:1``) as device names, no repeats."""
    names = []
    for part in raw.split(","):
        part = part.strip().lower()
        if part.isdigit():
            part = f"cuda:{part}"
        if not CONCRETE_DEVICE.fullmatch(part):
            raise BadInput(f"{flag} must be a comma-separated list of CUDA indices (0,1,2) or devices "
                           f"(cuda:N, cpu, mps), got {raw!r}")
        names.append(part)
    if len(set(names)) != len(names):
        raise BadInput(f"{flag} lists a device twice: {raw!r}")
    return tuple(names)


def option(default: Any, help: str, *, group: str, **cli: Any) -> Any:
    """A dataclass field with its command-line description (keeps parser and option in one place)."""
    return field(default=default, metadata={"cli": CliSpec(help=help, group=group, **cli)})


def cli_fields() -> list[tuple[str, Any, CliSpec]]:
    """(name, default, CliSpec) of every option that has a flag, in declaration order."""
    out = []
    for f in fields(SearchOptions):
        spec = f.metadata.get("cli")
        if spec is not None:
            out.append((f.name, None if f.default is MISSING else f.default, spec))
    return out


def flag_of(name: str) -> str:
    """The command-line flag of an option (for messages)."""
    for f in fields(SearchOptions):
        if f.name == name:
            spec = f.metadata.get("cli")
            return spec.flag_for(name) if spec is not None else _dashed(name)
    raise KeyError(name)


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """Everything ``igc-nas search`` takes; validated on construction."""

    # data
    dataset: str = option("digits", "digits (bundled, default), cifar10, cifar100, tinyimagenet, imagefolder",
                          group="data")
    data_dir: str | None = option(None, "folder with the data set's official files (or your class folders)",
                                  group="data")
    download: bool = option(False, "download CIFAR when it is not in --data-dir", group="data", kind="store_true")
    val_fraction: float = option(0.2, "share of the training images held out for validation (default 0.2)",
                                 group="data", type=float)
    memory_cap_mb: float | None = option(
        None, "image folders (imagefolder, tinyimagenet) whose decoded uint8 training images exceed this many MiB "
        "are streamed from their disk cache instead of held in memory (default: held)", group="data", type=float)
    cache_dir: str | None = option(None, "where decoded image folders are cached (default: DATA_DIR/.igcnas-cache, "
                                   "else ~/.cache/igcnas)", group="data")
    # space
    families: tuple[str, ...] | None = option(
        None, "block family to search (repeatable; default: all of " + ", ".join(DEFAULT_FAMILIES) + ")",
        group="space", flag="--family", kind="append")
    widths: tuple[int, ...] | None = option(None, "first-stage width to search (repeatable)", group="space",
                                            flag="--width", kind="append", type=int)
    blocks: tuple[int, ...] = option(DEFAULT_BLOCKS, "blocks per stage to search (default "
                                     + " ".join(map(str, DEFAULT_BLOCKS)) + ")", group="space", kind="nargs+",
                                     type=int)
    max_l: int = option(DEFAULT_MAX_L, f"largest L (group convolutions per block, default {DEFAULT_MAX_L})",
                        group="space", type=int)
    structured: bool = option(False, "also search Structured Convolutions per stage (sum-pool + small kernel; "
                              "seed 004); default off", group="space", parse=on_off, metavar="on|off")
    # budget
    max_params: float | None = option(None, "parameter budget (250k, 1.5M)", group="budget", parse=parse_count)
    max_macs: float | None = option(None, "MAC budget (multiply-accumulates; FLOPs = 2*MACs)", group="budget",
                                    parse=parse_count)
    max_latency_ms: float | None = option(
        None, "latency budget in ms: predicted before training from --latency-table (never trained when over), "
        "else measured on the untrained network on this CPU at batch 1", group="budget", parse=parse_count)
    latency_objective: bool = option(False, "add latency (predicted with --latency-table, else measured) as an "
                                     "objective", group="budget", kind="store_true")
    latency_table: str | None = option(
        None, "a latency table of the device and runtime to deploy on (igc-nas latency-table), measured on this "
        "machine: latency is predicted from it before training and timed again on the trained network",
        group="budget", metavar="PATH")
    force_latency_table: bool = option(False, "use a --latency-table measured on another device or runtime",
                                       group="budget", kind="store_true")
    latency_table_min_share: float | None = option(
        None, "refuse a --latency-table whose own held-out error is worse than this: the share of held-out "
        "networks it predicts within +-10%% (0-1, e.g. 0.9; default: only warn below 0.9)", group="budget",
        type=float, metavar="SHARE")
    # search
    n_trials: int = option(40, "trials to train in this run, to the end or stopped early (default 40)",
                           group="search", type=int)
    total_trials: int | None = option(
        None, "instead: complete the study up to this many trained trials in all (resumable; any number of "
              "workers on one storage share the target and never exceed it)", group="search", type=int)
    timeout: float | None = option(None, "stop starting trials after this many seconds", group="search", type=float)
    sampler: str = option(SAMPLERS[0], f"{SAMPLERS[0]} (default: multi-objective evolution over the fixed "
                          f"genes), " + ", ".join(SAMPLERS[1:]), group="search")
    seed: int = option(0, "seed of the data split, the training and (unless --sampler-seed) the sampler "
                          "(default 0); a study keeps the split it was created with", group="search", type=int)
    sampler_seed: int | None = option(None, "seed of the sampler only (default: --seed); give each worker of a "
                                      "shared study its own", group="search", type=int)
    seed_balanced: bool = option(True, "do not start a new study with the balance-condition IGC-V2, Xception and "
                                 "zoo networks", group="search", flag="--no-seed-balanced", kind="store_false")
    epochs: int = option(_TRAIN.epochs, f"training epochs per trial (default {_TRAIN.epochs})", group="search",
                         type=int)
    batch_size: int = option(_TRAIN.batch_size, f"batch size (default {_TRAIN.batch_size})", group="search",
                             type=int)
    lr: float = option(_TRAIN.lr, f"peak learning rate (SGD, Nesterov, cosine; default {_TRAIN.lr:g})",
                       group="search", type=float)
    device: str = option(_TRAIN.device, f"where trials train: {DEVICE_CHOICES} (default auto: CUDA when "
                         "available, else the CPU)", group="search")
    precision: str | None = option(
        _TRAIN.precision, "fp32, bf16 or fp16 (autocast; fp16 with a gradient scaler). Default: bf16 on CUDA "
        "devices that support it, fp32 on the CPU", group="search", metavar="fp32|bf16|fp16")
    structured_mode: str = option(
        _TRAIN.structured_mode, "how stages with Structured Convolutions train (--structured on): "
        + ", ".join(STRUCTURED_MODES) + f" (default {_TRAIN.structured_mode}; regularised: full kernels with the "
        "structural regulariser, scored after projection; direct: the small kernels themselves)", group="search",
        metavar="|".join(STRUCTURED_MODES))
    structure_lambda: float = option(
        _TRAIN.structure_lambda, f"weight of the structural regulariser (--structured-mode regularised; default "
        f"{_TRAIN.structure_lambda:g})", group="search", type=float)
    recalibrate_bn: bool = option(
        _TRAIN.recalibrate_plain, "re-estimate BatchNorm statistics before every evaluation of plain networks "
        "(each epoch, so every rung, and the end), as Structured Convolution networks always are (default "
        f"{'on' if _TRAIN.recalibrate_plain else 'off'})",
        group="search", parse=on_off, metavar="on|off")
    max_batches_per_epoch: int | None = option(
        None, "cap the batches of every epoch (smoke tests and quick looks; default: full epochs)", group="search",
        type=int)
    early_stopping: bool = option(
        True, "train every trial for all --epochs. By default trials are trained in rungs (epochs --min-epochs * "
              "eta**k) and stop at a rung when more trials there dominate them on (accuracy at the rung, params, "
              "MACs) than dominate the best 1/eta (multi-objective successive halving)", group="search",
        flag="--no-early-stopping", kind="store_false")
    eta: int = option(3, "early stopping: rung spacing and 1/eta quota (default 3)", group="search", type=int)
    # Epoch 3 of 4 (with TrainSettings.recalibrate_plain on): at epoch 1 most networks are still at chance,
    # and at epoch 2 a rung even on re-estimated accuracy left the sampler slower to random search's
    # long-fidelity hypervolume (bench/fidelity.py).
    min_epochs: int = option(3, "early stopping: epochs at the first rung (default 3)", group="search", type=int)
    # reliability
    trial_timeout: float | None = option(None, "fail a trial whose training runs longer (seconds)",
                                         group="reliability", type=float)
    trial_memory_mb: float | None = option(
        None, "fail a trial whose own memory (resident-set growth since it started) exceeds this many MB",
        group="reliability", type=float)
    heartbeat_interval: int = option(20, "seconds between trial heartbeats; a killed worker's trial is failed and "
                                     "re-run after --grace-period (default 20)", group="reliability", type=int)
    grace_period: int = option(60, "seconds without heartbeat (default 60)", group="reliability", type=int)
    n_jobs: int = option(1, "parallel trials in this process (optuna backend)", group="reliability", type=int)
    devices: tuple[str, ...] | None = option(
        None, "one trial per listed device at a time, all on this study (optuna backend), e.g. 0,1,2,3 for four "
        "GPUs; sets --n-jobs to their number", group="reliability", parse=parse_devices, metavar="0,1,...")
    # storage and output
    storage: str | None = option(None, "study storage (default: sqlite:///OUTPUT_DIR/STUDY/study.db): a database URL "
                                 "(postgresql://... for many machines), journal:///PATH (many processes on one "
                                 "machine, no server) or grpc://HOST:PORT (igc-nas storage-proxy, for thousands of "
                                 "workers)", group="storage and output")
    study: str | None = option(None, "study name (default igc-nas-DATASET); an existing study is continued",
                               group="storage and output")
    output_dir: str = option("igc-nas-runs", "where run folders go (default igc-nas-runs)",
                             group="storage and output")
    artifacts_dir: str | None = option(None, "where trained weights go (default: OUTPUT_DIR/STUDY/artifacts)",
                                       group="storage and output")
    save_weights: bool = True
    # backend
    backend: str = option("optuna", "optuna (default) or ray (Ray Tune + OptunaSearch)", group="backend")
    address: str | None = option(None, "Ray cluster address (auto or HOST:PORT); default: a local Ray instance",
                                 group="backend")
    cpus_per_trial: int = option(1, "CPUs per Ray trial (default 1)", group="backend", type=int)
    gpus_per_trial: float = option(0.0, "GPUs per Ray trial, fractions allowed (0.5: two small trials per GPU); "
                                   "such trials train on their GPU (default 0)", group="backend", type=float)
    max_concurrent: int | None = option(None, "concurrent Ray trials (default: as many as fit)", group="backend",
                                        type=int)

    def __post_init__(self) -> None:
        from igcnas.evaluators.datasets import DATASETS

        for name in ("families", "widths", "blocks"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(dict.fromkeys(value)) if name == "families" else tuple(value))
        if self.dataset not in DATASETS:
            raise BadInput(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.sampler not in SAMPLERS:
            raise BadInput(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not isinstance(self.structured, bool):
            raise BadInput(f"--structured must be one of on, off, got {self.structured!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise BadInput(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not DEVICE_NAME.fullmatch(str(self.device).lower()):
            raise BadInput(f"--device must be one of {DEVICE_CHOICES}, got {self.device!r}")
        if self.devices is not None:
            object.__setattr__(self, "n_jobs", len(self.devices))
        if not 0 <= self.gpus_per_trial < float("inf"):
            raise BadInput(f"--gpus-per-trial must be a number >= 0 (fractions allowed), got {self.gpus_per_trial}")
        if self.structured_mode not in STRUCTURED_MODES:
            raise BadInput(f"--structured-mode must be one of {', '.join(STRUCTURED_MODES)}, "
                           f"got {self.structured_mode!r}")
        if (isinstance(self.structure_lambda, bool) or not isinstance(self.structure_lambda, (int, float))
                or not 0 <= self.structure_lambda < float("inf")):
            raise BadInput(f"--structure-lambda must be a number >= 0, got {self.structure_lambda!r}")
        if self.backend not in BACKENDS:
            raise BadInput(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("n_trials", "epochs", "batch_size", "n_jobs", "cpus_per_trial", "max_l"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BadInput(f"{flag_of(name).lstrip('-')} must be an integer >= 1, got {value!r}")
        for name in ("total_trials", "max_concurrent", "max_batches_per_epoch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise BadInput(f"{flag_of(name).lstrip('-')} must be an integer >= 1, got {value!r}")
        for name in ("timeout", "lr", "trial_timeout", "trial_memory_mb", "max_params", "max_macs",
                     "max_latency_ms"):
            value = getattr(self, name)
            if (value is not None or name == "lr") and not (isinstance(value, (int, float)) and value > 0):
                raise BadInput(f"{flag_of(name)} must be > 0, got {value!r}")
        if self.force_latency_table and self.latency_table is None:
            raise BadInput("--force-latency-table needs --latency-table PATH")
        check_min_share(self.latency_table_min_share, has_table=self.latency_table is not None)
        if not 0.0 < self.val_fraction < 1.0:
            raise BadInput(f"--val-fraction must be between 0 and 1, got {self.val_fraction!r}")
        if self.study is not None and not self.study.strip():
            raise BadInput("--study name must not be empty")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise BadInput("--heartbeat-interval must be >= 1 s and --grace-period longer than it")
        _ = self.rung_schedule  # validates eta and min_epochs

    @property
    def budget(self) -> Budget:
        return Budget(max_params=self.max_params, max_macs=self.max_macs, max_latency_ms=self.max_latency_ms)

    @property
    def rung_schedule(self) -> RungSchedule | None:
        """The early-stopping rungs, or None when early stopping is off."""
        schedule = RungSchedule(max_epochs=self.epochs, min_epochs=self.min_epochs, eta=self.eta)
        return schedule if self.early_stopping else None

    @property
    def fidelity(self) -> str:
        return fidelity_key(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            max_batches_per_epoch=self.max_batches_per_epoch, recalibrate_plain=self.recalibrate_bn)

    def train_settings(self, *, seed: int) -> TrainSettings:
        """How each trial trains (its own seed), with the per-trial limits."""
        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed,
                             max_batches_per_epoch=self.max_batches_per_epoch, time_limit_s=self.trial_timeout,
                             memory_limit_mb=self.trial_memory_mb, structured_mode=self.structured_mode,
                             device=self.device, precision=self.precision,
                             structure_lambda=self.structure_lambda, recalibrate_plain=self.recalibrate_bn)

    def evaluation_record(self) -> dict[str, Any]:
        """How the search read its data and trained: stored on the study, read back by ``igc-nas pick``."""
        return {"dataset": self.dataset,
                "data_dir": str(Path(self.data_dir).expanduser().resolve()) if self.data_dir else None,
                "split_seed": self.seed, "val_fraction": self.val_fraction, "epochs": self.epochs,
                "memory_cap_mb": self.memory_cap_mb, "cache_dir": self.cache_dir,
                "batch_size": self.batch_size, "lr": self.lr, "max_batches_per_epoch": self.max_batches_per_epoch,
                "structured_mode": self.structured_mode, "structure_lambda": self.structure_lambda,
                "recalibrate_plain": self.recalibrate_bn}

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return objectives_for(latency=self.latency_objective)

    @property
    def study_name(self) -> str:
        return self.study or f"igc-nas-{self.dataset}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.study_name

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(self.run_dir / 'study.db').resolve()}"

    @property
    def artifacts_path(self) -> Path:
        """Where trained weights go (an Optuna FileSystemArtifactStore); shared by all workers."""
        return Path(self.artifacts_dir) if self.artifacts_dir else self.run_dir / "artifacts"

    @property
    def measure_latency(self) -> bool:
        return self.latency_objective or self.max_latency_ms is not None or self.latency_table is not None

    def changed(self) -> list[str]:
        """Names of the options that differ from their defaults."""
        out = []
        for f in fields(self):
            default = f.default if f.default is not MISSING else None
            if getattr(self, f.name) != default:
                out.append(f.name)
        return out
