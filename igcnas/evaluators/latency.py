"""Latency predicted before training: per-device, per-runtime tables of the parts networks are made of.

On a device, MACs mislead: IGC networks are memory- and dispatch-bound, and the runtime changes their
order (PyTorch eager against ONNX Runtime). Measuring every candidate network would cost more than the
search; the parts they are built from repeat. A network here is a stem, a chain of units (blocks with
their skip connection, the granularity at which the plan resolves shapes) and a tail (head 1x1, pooling,
classifier). Each distinct part -- same family, same resolved shapes, same input size -- is timed once,
in isolation, at a fixed batch and thread count, by the project's one timer (:mod:`.timing`); a network's
latency is predicted as the sum over its parts turned into a whole network's by a calibration fitted on
whole networks (:mod:`.latency_fit`), and the table states its own error on networks held out from the fit.

The table is tied to where it was measured (:class:`Fingerprint`: CPU model, cores, runtime and version,
threads, batch, input shape): figures from another device or runtime are refused unless forced.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from igcnas.errors import BadInput
from igcnas.files import atomic_write
from igcnas.evaluators.latency_fit import (Assessment, Calibration, assess, choose_calibration,
                                          predict_from_features)
from igcnas.evaluators.timing import Timing, note_reference, reference_us, time_calls
from igcnas.models.onnx_export import cpu_name, export_onnx, ort_session
from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.families import get_family
from igcnas.search_space.plan import resolve

__all__ = ["RUNTIMES", "TABLE_FORMAT", "Fingerprint", "Part", "PartKey", "LatencyTable", "Runner", "network_parts",
           "part_keys", "runtime_runner", "time_modules", "cpu_name", "measure_networks",
           "measure_network_ms", "measure_networks_ms", "build_table", "space_configs", "sample_configs",
           "choose_calibration", "Calibration"]

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")
TABLE_FORMAT = 2  # bumped when the keys or the timing method change (old tables are then refused)


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """Where and how a table's figures were measured; two tables compare only when these are equal."""

    cpu: str
    cores: int
    runtime: str
    runtime_version: str
    threads: int
    batch: int
    input_size: int
    in_channels: int

    @classmethod
    def here(cls, *, runtime: str, threads: int, batch: int, input_size: int, in_channels: int) -> Fingerprint:
        return cls(cpu=cpu_name(), cores=os.cpu_count() or 1, runtime=runtime,
                   runtime_version=runtime_runner(runtime, threads=threads).version, threads=threads, batch=batch,
                   input_size=input_size, in_channels=in_channels)

    def differences(self, other: Fingerprint) -> list[str]:
        """``field: mine != theirs`` for each field that differs."""
        return [f"{name} {value!r} != {getattr(other, name)!r}" for name, value in asdict(self).items()
                if getattr(other, name) != value]

    def describe(self) -> str:
        return (f"{self.runtime} {self.runtime_version}, {self.threads} thread(s), batch {self.batch}, "
                f"{self.in_channels}x{self.input_size}x{self.input_size} input, {self.cpu} ({self.cores} cores)")


class _Tail(nn.Module):
    """The network's head 1x1 (if any), pooling and classifier, as one module of its own (for timing alone)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head, self.pool, self.classifier = model.head, model.pool, model.classifier
        self._classify = type(model).classify

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._classify(self, x)


def _key(*fields: Any) -> str:
    return hashlib.sha1(repr(fields).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class PartKey:
    """What decides a part's speed (not its weights): its key, a label for people and its input shape."""

    key: str
    label: str
    input_shape: tuple[int, ...]  # (C, H, W), without the batch


@dataclass(frozen=True)
class Part(PartKey):
    """A :class:`PartKey` with the module that runs it (taken from a built network)."""

    module: nn.Module


def part_keys(config: NetworkConfig) -> list[PartKey]:
    """The parts of ``config`` in forward order, from its resolved plan alone (no torch modules built).

    Cheap (the plan's resolution): predictions run before every trial.
    """
    plan = resolve(config)
    activation = get_family(config.family).activation
    size = config.input_size
    keys = [PartKey(_key("stem", activation, plan.stem), f"stem {plan.stem.c_in}->{plan.stem.c_out} @{size}",
                    (config.in_channels, size, size))]
    for i, stage_plan in enumerate(plan.stages):
        for j, unit_plan in enumerate(stage_plan):
            first = unit_plan.blocks[0]
            size_in = first.convs[0].size_in
            keys.append(PartKey(_key("unit", config.family, unit_plan),
                                f"{config.family} s{i}u{j} {first.c_in}->{unit_plan.blocks[-1].c_out} @{size_in}",
                                (first.c_in, size_in, size_in)))
    c_final = plan.stages[-1][-1].blocks[-1].c_out
    keys.append(PartKey(_key("tail", activation, plan.head, c_final, plan.final_size, config.num_classes),
                        f"tail {c_final}->{config.num_classes} @{plan.final_size}",
                        (c_final, plan.final_size, plan.final_size)))
    return keys


def network_parts(config: NetworkConfig, model: nn.Module | None = None) -> list[Part]:
    """:func:`part_keys` with the modules that run them, taken from ``model`` (built, deployed form, if None)."""
    from igcnas.models import build_model

    if model is None:
        model = build_model(config, seed=0, form="deployed")
    modules: list[nn.Module] = [model.stem, *(unit for stage in model.stages for unit in stage),
                                _Tail(model)]
    return [Part(k.key, k.label, k.input_shape, module) for k, module in zip(part_keys(config), modules, strict=True)]


class Runner(Protocol):
    """Runs a module on one runtime with a fixed number of threads: :meth:`prepare` gives the call to time.

    Timing itself is :mod:`igcnas.evaluators.timing`'s, the same for every runtime.
    """

    name: str
    version: str
    threads: int

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> Callable[[], Any]: ...


@dataclass
class TorchRunner:
    """PyTorch eager, inference mode, ``threads`` intra-op threads (set by the timer while it times)."""

    threads: int = 1
    name: str = "torch"
    version: str = field(default_factory=lambda: torch.__version__)

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> Callable[[], Any]:
        module.eval()
        x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))

        def call() -> None:
            with torch.inference_mode():
                module(x)
        return call


def onnx_bytes(module: nn.Module, input_shape: tuple[int, ...], batch: int) -> bytes:
    """``module`` (eval mode) as an ONNX model for batches of ``batch`` (:func:`export_onnx`), as bytes.

    The TorchScript-based exporter at a fixed batch: a part exports in about 0.2 s against 0.6-1 s with
    the dynamo exporter (1,400 parts: minutes instead of a quarter of an hour), and with the batch fixed
    ONNX Runtime folds the shape arithmetic of the channel shuffles, so the graph runs as fast as the
    dynamo export with a dynamic batch that ``igc-nas pick`` writes (measured on six networks of every
    family at batch 1: within 4% of each other, where the TorchScript export with a dynamic batch was up
    to 70% slower on the shuffle families).
    """
    with tempfile.TemporaryDirectory(prefix="igcnas-part-") as folder:
        path = export_onnx(module, Path(folder) / "part.onnx", input_shape, opset=17, exporter="torchscript",
                           batch=batch, output_name="out")
        return path.read_bytes()


@dataclass
class OrtRunner:
    """ONNX Runtime on the CPU: ``threads`` intra-op threads, sequential, all graph optimisations."""

    threads: int = 1
    name: str = "onnxruntime"
    version: str = ""

    def __post_init__(self) -> None:
        from igcnas.models.onnx_export import require_onnx

        require_onnx()
        import onnxruntime

        self.version = onnxruntime.__version__

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> Callable[[], Any]:
        session = ort_session(onnx_bytes(module.eval(), input_shape, batch), threads=self.threads)
        feed = {"images": np.random.default_rng(0).standard_normal((batch, *input_shape), dtype=np.float32)}
        return lambda: session.run(None, feed)


def runtime_runner(runtime: str, *, threads: int) -> Runner:
    if runtime not in RUNTIMES:
        raise BadInput(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BadInput(f"--threads must be an integer >= 1, got {threads!r}")
    return TorchRunner(threads=threads) if runtime == "torch" else OrtRunner(threads=threads)


# Calls prepared and timed in turns at once: enough for a slow phase to be shared among many parts, few
# enough that ONNX Runtime sessions (a few MB each) do not pile up.
TURN_GROUP = 64


def time_modules(runner: Runner, items: Sequence[tuple[nn.Module, tuple[int, ...]]], batch: int, *,
                 progress: Callable[[int, int], None] | None = None) -> list[Timing]:
    """Each ``(module, input_shape)`` timed on ``runner`` at ``batch`` (:func:`igcnas.evaluators.timing.time_calls`,
    in turns, :data:`TURN_GROUP` at a time); modules are left in eval mode."""
    out: list[Timing] = []
    threads = runner.threads if runner.name == "torch" else None
    for start in range(0, len(items), TURN_GROUP):
        group = items[start:start + TURN_GROUP]
        out += time_calls([runner.prepare(module, shape, batch) for module, shape in group], threads=threads)
        if progress is not None:
            progress(len(out), len(items))
    return out


def measure_networks(configs: Sequence[NetworkConfig], fingerprint: Fingerprint,
                     models: Sequence[nn.Module] | None = None, *,
                     runner: Runner | None = None) -> list[Timing]:
    """Whole networks (deployed form, as designed) timed in turns on the fingerprint's runtime, threads, batch."""
    from igcnas.evaluators.cost import as_designed
    from igcnas.models import build_model

    if models is None:
        models = [build_model(config, seed=0, form="deployed") for config in configs]
    runner = runner or runtime_runner(fingerprint.runtime, threads=fingerprint.threads)
    with contextlib.ExitStack() as stack:
        for model in models:  # as the table's parts run (and as deployed), not the training fast path
            stack.enter_context(as_designed(model))
        return time_modules(runner, [(m, c.input_shape) for c, m in zip(configs, models, strict=True)],
                            fingerprint.batch)


def measure_network_ms(config: NetworkConfig, fingerprint: Fingerprint, model: nn.Module | None = None) -> float:
    """A whole network's latency on the fingerprint's runtime, threads and batch (deployed form)."""
    return measure_networks([config], fingerprint, None if model is None else [model])[0].ms


def measure_networks_ms(configs: list[NetworkConfig], fingerprint: Fingerprint) -> list[float]:
    """:func:`measure_networks`' figures in milliseconds."""
    return [t.ms for t in measure_networks(configs, fingerprint)]


@dataclass
class LatencyTable:
    """Part latencies (ms) of one device and runtime, the calibration that turns their sum into a network's,
    and the table's own error on networks it was not fitted on.

    A network's prediction is its parts' sum turned into a whole network's latency by ``calibration``.
    ``probe_us`` is the timer's fast-phase reference seen while the table was built
    (:mod:`igcnas.evaluators.timing`): figures measured later against this table count blocks by it.
    """

    fingerprint: Fingerprint
    entries: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=lambda: Calibration())
    calibration_networks: list[dict[str, Any]] = field(default_factory=list)
    heldout_networks: list[dict[str, Any]] = field(default_factory=list)
    assessment: Assessment = field(default_factory=Assessment)
    probe_us: float | None = None
    build_seconds: float = 0.0
    _figures: list[int] = field(default_factory=lambda: [0, 0], repr=False)  # [contended, all] of this build

    # ---- prediction -----------------------------------------------------------------------------------
    def missing(self, config: NetworkConfig) -> list[PartKey]:
        return [p for p in part_keys(config) if p.key not in self.entries]

    def parts_sum(self, config: NetworkConfig, keys: list[PartKey] | None = None) -> tuple[float, int]:
        """Sum of the part latencies of ``config`` and the number of parts; BadInput when a part is missing."""
        parts = part_keys(config) if keys is None else keys
        missing = [p.label for p in parts if p.key not in self.entries]
        if missing:
            raise BadInput(f"the latency table has no entry for {len(missing)} part(s) of this network "
                           f"(first: {missing[0]}); extend it with igc-nas latency-table on this space")
        return sum(self.entries[p.key] for p in parts), len(parts)

    def features(self, config: NetworkConfig) -> dict[str, Any]:
        """What the calibration reads: the parts' sum and count (and the family, for reports)."""
        total, n = self.parts_sum(config)
        return {"family": config.family, "parts_ms": total, "parts": n}

    def predict(self, config: NetworkConfig) -> float:
        return predict_from_features(self.calibration, self.features(config))

    def covers(self, config: NetworkConfig) -> bool:
        return not self.missing(config)

    def quality_lines(self) -> list[str]:
        """What the table says of its own error (one line), and a line for each warning (below goal, busy)."""
        return self.assessment.lines()

    # ---- building --------------------------------------------------------------------------------------
    def _runner(self, runner: Runner | None) -> Runner:
        return runner or runtime_runner(self.fingerprint.runtime, threads=self.fingerprint.threads)

    def _count(self, timings: Sequence[Timing]) -> None:
        self._figures[0] += sum(t.contended for t in timings)
        self._figures[1] += len(timings)

    def add(self, configs: Iterable[NetworkConfig], *, progress: Callable[[int, int], None] | None = None,
            runner: Runner | None = None) -> int:
        """Time every part of ``configs`` not yet in the table; returns how many were timed."""
        todo: dict[str, Part] = {}
        for config in configs:
            self._check_shape(config)
            if all(k.key in self.entries or k.key in todo for k in part_keys(config)):
                continue
            for part in network_parts(config):
                if part.key not in self.entries and part.key not in todo:
                    todo[part.key] = part
        parts = list(todo.values())
        timings = time_modules(self._runner(runner), [(p.module, p.input_shape) for p in parts],
                               self.fingerprint.batch, progress=progress)
        self._count(timings)
        for part, timing in zip(parts, timings):
            self.entries[part.key] = round(timing.ms, 6)
            self.labels[part.key] = part.label
        return len(parts)

    def _rows(self, configs: Sequence[NetworkConfig], timings: Sequence[Timing]) -> list[dict[str, Any]]:
        from igcnas.search_space.enumerate import arch_id

        return [{"arch": arch_id(c), **self.features(c), "measured_ms": t.ms} for c, t in zip(configs, timings)]

    def calibrate(self, configs: Sequence[NetworkConfig], *, runner: Runner | None = None) -> None:
        """Fit the calibration on whole networks measured here (the form chosen by cross-validation)."""
        timings = measure_networks(configs, self.fingerprint, runner=self._runner(runner))
        self._count(timings)
        rows = self._rows(configs, timings)
        if not rows:  # nothing new to fit on: an extended table keeps its calibration
            return
        # An extended table fits on its earlier networks too (their measurements stand), so that a table
        # serving several spaces keeps predicting the families of the first ones.
        new = {r["arch"] for r in rows}
        self.calibration_networks = [r for r in self.calibration_networks if r["arch"] not in new] + rows
        self.calibration = choose_calibration(self.calibration_networks)

    def assess(self, configs: Sequence[NetworkConfig], *, runner: Runner | None = None) -> Assessment:
        """Measure held-out networks twice (each time prepared afresh) and store the table's error on them.

        ``configs`` must be networks the calibration was not fitted on; earlier held-out networks (from a
        table being extended) stay and are judged with the current calibration.
        """
        runner = self._runner(runner)
        first = measure_networks(configs, self.fingerprint, runner=runner)
        second = measure_networks(configs, self.fingerprint, runner=runner)
        self._count([*first, *second])
        rows = [{**row, "repeat_ms": t.ms} for row, t in zip(self._rows(configs, first), second)]
        fitted = {r["arch"] for r in self.calibration_networks}
        new = {r["arch"] for r in rows}
        self.heldout_networks = [r for r in self.heldout_networks if r["arch"] not in new | fitted] + rows
        contended, total = self._figures
        self.assessment = assess(self.calibration, [r for r in self.heldout_networks if r["arch"] not in fitted],
                                 contended_share=contended / total if total else 0.0)
        return self.assessment

    def _check_shape(self, config: NetworkConfig) -> None:
        fp = self.fingerprint
        if (config.in_channels, config.input_size) != (fp.in_channels, fp.input_size):
            raise BadInput(f"the latency table is for {fp.in_channels}x{fp.input_size}x{fp.input_size} inputs, "
                           f"the network takes {config.in_channels}x{config.input_size}x{config.input_size}")

    # ---- checking and files ------------------------------------------------------------------------------
    def check(self, here: Fingerprint, *, force: bool = False, source: str = "the latency table") -> None:
        """BadInput (one line) when ``here`` is not where the table was measured, unless ``force``.

        The input shape is never forced: a table of another image size has no entry for any network here.
        """
        fp = self.fingerprint
        if (fp.in_channels, fp.input_size) != (here.in_channels, here.input_size):
            raise BadInput(f"{source} is for {fp.in_channels}x{fp.input_size}x{fp.input_size} images, these networks "
                           f"take {here.in_channels}x{here.input_size}x{here.input_size}: build a table for them "
                           "with igc-nas latency-table --input-size/--in-channels")
        differences = fp.differences(here)
        if differences and not force:
            raise BadInput(f"{source} was measured elsewhere ({'; '.join(differences)}); build one on this "
                           f"device and runtime (igc-nas latency-table) or pass --force-latency-table")
        if differences:
            log.warning("using %s measured elsewhere (forced): %s", source, "; ".join(differences))

    def check_here(self, *, input_size: int, in_channels: int, force: bool = False,
                   source: str = "the latency table") -> Fingerprint:
        """:meth:`check` against this machine, for networks of this input shape; returns where we are."""
        fp = self.fingerprint
        here = Fingerprint.here(runtime=fp.runtime, threads=fp.threads, batch=fp.batch, input_size=input_size,
                                in_channels=in_channels)
        self.check(here, force=force, source=source)
        if here == fp:  # this machine: its fast phase is the one the table's figures were taken in
            note_reference(self.probe_us)
        return here

    def save(self, path: str | Path) -> Path:
        """Write the table (gzip JSON) through a temporary file: a failed write leaves the old one whole."""
        path = Path(path)
        data = {"format": TABLE_FORMAT, "fingerprint": asdict(self.fingerprint),
                "calibration": self.calibration.as_dict(), "calibration_networks": self.calibration_networks,
                "heldout_networks": self.heldout_networks, "assessment": self.assessment.as_dict(),
                "probe_us": self.probe_us, "build_seconds": self.build_seconds, "entries": self.entries,
                "labels": self.labels}
        def write(temporary: Path) -> None:
            with gzip.open(temporary, "wt", encoding="utf-8") as handle:
                json.dump(data, handle, indent=0, sort_keys=True)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"latency table {str(path)!r} does not exist")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"latency table {str(path)!r} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise BadInput(f"latency table {str(path)!r} is not a format-{TABLE_FORMAT} igc-nas latency table")
        try:
            return cls._from_data(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInput(f"latency table {str(path)!r} is damaged ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_data(cls, data: dict[str, Any]) -> LatencyTable:
        return cls(fingerprint=Fingerprint(**data["fingerprint"]), entries=dict(data["entries"]),
                   labels=dict(data.get("labels", {})), calibration=Calibration(**data["calibration"]),
                   calibration_networks=list(data.get("calibration_networks", [])),
                   heldout_networks=list(data.get("heldout_networks", [])),
                   assessment=Assessment(**data.get("assessment", {})), probe_us=data.get("probe_us"),
                   build_seconds=float(data.get("build_seconds", 0.0)))


def space_configs(spec: Any, *, fits: Callable[[NetworkConfig], bool] | None = None) -> list[NetworkConfig]:
    """The networks whose parts a table for ``spec`` needs (:meth:`DesignSpace.covering`)."""
    from igcnas.search_space.enumerate import DesignSpace
    from igcnas.search_space.spec import CHANNEL_REDUCTIONS, STRUCTURED_KERNELS, structure_fields

    structures: tuple[dict[str, int], ...] = ({},)
    if spec.structured:
        structures = tuple(structure_fields(k, r) for k in range(len(STRUCTURED_KERNELS))
                           for r in range(len(CHANNEL_REDUCTIONS)))
    return list(DesignSpace(spec).covering(fits=fits, structures=structures))


class TooFew(BadInput):
    """Fewer distinct networks than asked for; ``found`` holds the ones there are."""

    def __init__(self, message: str, found: list[NetworkConfig]) -> None:
        super().__init__(message)
        self.found = found


def sample_configs(spec: Any, n: int, *, seed: int, fits: Callable[[NetworkConfig], bool] | None = None,
                   exclude: Iterable[NetworkConfig] = ()) -> list[NetworkConfig]:
    """``n`` distinct networks of ``spec`` spread over every (family, width) cell in turn, random otherwise.

    The search's own genome draws them (structured stages included when the space has them); networks
    in ``exclude`` (compared by architecture) are never returned, so figures checked on these are
    figures on networks the table has not seen whole.
    """
    import random

    from igcnas.search_space.enumerate import arch_id
    from igcnas.search_space.genome import genome_for

    genome = genome_for(spec)
    rng = random.Random(seed)
    seen = {arch_id(c) for c in exclude}
    cells = [(f, w) for f in spec.families for w, index in zip(spec.widths, range(len(spec.widths)))
             if index in genome.valid_widths[f]]
    rng.shuffle(cells)
    out: list[NetworkConfig] = []
    turn, misses = 0, 0
    while len(out) < n and cells:
        family, width = cells[turn % len(cells)]
        config = genome.decode(genome.random_params(rng))  # the genome's own draw, kept when it hits the cell
        ident = arch_id(config)
        if ((config.family, config.stages[0].width) != (family, width) or ident in seen
                or (fits is not None and not fits(config))):
            misses += 1
            if misses > 3000:  # this cell has nothing new (dense and Xception have two networks a width)
                cells.remove((family, width))
                misses = 0
            continue
        seen.add(ident)
        out.append(config)
        turn, misses = turn + 1, 0
    if len(out) < n:
        raise TooFew(f"only {len(out)} distinct networks of this space fit (asked for {n})", out)
    return out


# Held-out networks by default: as many as calibrated on, at least this many (a share over 28 networks moves
# in steps of 3.6 points; over 48, 2.1).
HOLDOUT_MIN = 48


def calibration_size(spec: Any) -> int:
    """Whole networks measured to calibrate by default: two per (family, width) cell of the space, at least 16.

    Measured on the default digits space (35 cells): calibrating on 70 networks rather than 35 raised
    the share of held-out predictions within +-10% from 0.87 to about 0.93 in ONNX Runtime (repeated
    70/25 splits of 95 measured networks), where single networks cost about 10 microseconds.
    """
    return max(16, 2 * len(spec.families) * len(spec.widths))  # and enough to choose a fit on in small spaces


def _draw(spec: Any, n: int, *, seed: int, fits: Callable[[NetworkConfig], bool] | None,
          exclude: Iterable[NetworkConfig], default: bool, flag: str) -> list[NetworkConfig]:
    """``n`` networks of ``spec`` not in ``exclude``; a default count takes what a small space has."""
    try:
        return sample_configs(spec, n, seed=seed, fits=fits, exclude=exclude) if n else []
    except TooFew as few:
        if not default:
            raise BadInput(f"{flag} {n}: {few}") from None
        return few.found


def build_table(spec: Any, *, runtime: str, threads: int = 1, batch: int = 1, table: LatencyTable | None = None,
                fits: Callable[[NetworkConfig], bool] | None = None, calibration: int | None = None,
                holdout: int | None = None, seed: int = 0, force: bool = False,
                progress: Callable[[int, int], None] | None = None,
                calibration_exclude: Iterable[NetworkConfig] = (), runner: Runner | None = None) -> LatencyTable:
    """Time every part ``spec`` (within ``fits``) can produce that ``table`` lacks, calibrate, then assess.

    A table measured on this device and runtime is extended (reusable across studies and spaces);
    one measured elsewhere is refused unless ``force``. ``calibration`` whole networks are measured to fit
    the calibration, ``holdout`` others (default: as many, at least :data:`HOLDOUT_MIN`) to state the table's
    own error
    (:class:`~igcnas.evaluators.latency_fit.Assessment`). ``calibration_exclude``: networks never to
    calibrate or assess with (a benchmark's own validation networks). ``runner``: how modules are run
    (default: the runtime's; tests inject one).
    """
    start = time.perf_counter()
    here = Fingerprint.here(runtime=runtime, threads=threads, batch=batch, input_size=spec.input_size,
                            in_channels=spec.in_channels)
    if table is None:
        table = LatencyTable(fingerprint=here)
    else:
        table.check(here, force=force)
    table._figures = [0, 0]
    configs = space_configs(spec, fits=fits)
    excluded = list(calibration_exclude)
    n_calibration = calibration_size(spec) if calibration is None else calibration
    calibrating = _draw(spec, n_calibration, seed=seed, fits=fits, exclude=excluded, default=calibration is None,
                        flag="--calibration")
    n_holdout = max(len(calibrating), HOLDOUT_MIN) if holdout is None else holdout
    heldout = _draw(spec, n_holdout, seed=seed + 7919, fits=fits, exclude=[*excluded, *calibrating],
                    default=holdout is None, flag="--holdout")
    log.info("latency table: %d networks cover the space; timing the parts not yet in the table", len(configs))
    table.add([*configs, *calibrating, *heldout], progress=progress, runner=runner)
    table.calibrate(calibrating, runner=runner)
    table.assess(heldout, runner=runner)
    table.probe_us = min(table.probe_us or float("inf"), reference_us())
    table.build_seconds = round(table.build_seconds + time.perf_counter() - start, 1)
    for line in table.quality_lines()[1:]:
        log.warning("%s", line)
    return table
