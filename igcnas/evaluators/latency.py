"""Latency predicted before training: per-device, per-runtime tables of the parts networks are made of.

On a device, MACs mislead: IGC networks are memory- and dispatch-bound, and the runtime changes their
order (PyTorch eager against ONNX Runtime). Measuring every candidate network would cost more than the
search; the parts they are built from repeat. A network here is a stem, a chain of units (blocks with
their skip connection, the granularity at which the plan resolves shapes) and a tail (head 1x1, pooling,
classifier). Each distinct part -- same family, same resolved shapes, same input size -- is timed once,
in isolation, at a fixed batch and thread count; a network's latency is predicted as the sum over its
parts plus a calibration fitted on whole networks measured once (:class:`Calibration`: an offset and a
per-part term, per family when that predicts better; it absorbs what a part pays in isolation and not
inside a network, such as a runtime's per-call cost).

The table is tied to where it was measured (:class:`Fingerprint`: CPU model, cores, runtime and version,
threads, batch, input shape): figures from another device or runtime are refused unless forced.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import json
import logging
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from igcnas.errors import BadInput
from igcnas.models.onnx_export import cpu_name, export_onnx, ort_session
from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.families import get_family
from igcnas.search_space.plan import resolve

__all__ = ["RUNTIMES", "TABLE_FORMAT", "Fingerprint", "Part", "PartKey", "LatencyTable", "network_parts", "part_keys",
           "runtime_timer", "cpu_name", "measure_network_ms", "measure_networks_ms", "PASSES", "build_table", "space_configs", "sample_configs",
           "choose_calibration", "Calibration"]

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")
TABLE_FORMAT = 1  # bumped when the keys or the timing method change (old tables are then refused)
PASSES = 2  # every part (and calibration network) is timed this many times, in turns, keeping the fastest


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
                   runtime_version=runtime_timer(runtime, threads=threads).version, threads=threads, batch=batch,
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


def _per_call_ms(call: Callable[[], Any], *, sample_ms: float = 3.0, samples: int = 9, warmup: int = 3) -> float:
    """Milliseconds per call (fastest of ``samples`` samples), each sample a loop long enough for the clock (``sample_ms``)."""
    for _ in range(warmup):
        call()
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            call()
        elapsed = (time.perf_counter() - start) * 1000.0
        if elapsed >= sample_ms or loops >= 1 << 14:
            break
        loops = min(1 << 14, max(loops * 2, int(loops * sample_ms / max(elapsed, 1e-3)) + 1))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        times.append((time.perf_counter() - start) * 1000.0 / loops)
    # The fastest sample: on a shared machine, other work only ever adds time, so the minimum is the
    # steadiest estimate of what the part costs on its own (medians moved by 20% under load here).
    return min(times)


class Timer(Protocol):
    """Times a module at a batch size on one runtime, with a fixed number of threads."""

    name: str
    version: str
    threads: int

    def time_ms(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> float: ...


@dataclass
class TorchTimer:
    """PyTorch eager, inference mode, ``threads`` intra-op threads."""

    threads: int = 1
    name: str = "torch"
    version: str = field(default_factory=lambda: torch.__version__)

    def time_ms(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> float:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        was_training = module.training
        module.eval()
        x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
        try:
            with torch.inference_mode():
                return _per_call_ms(lambda: module(x))
        finally:
            module.train(was_training)
            torch.set_num_threads(previous)


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
class OrtTimer:
    """ONNX Runtime on the CPU: ``threads`` intra-op threads, sequential, all graph optimisations."""

    threads: int = 1
    name: str = "onnxruntime"
    version: str = ""
    _exported: dict[tuple[Any, ...], tuple[nn.Module, bytes]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        from igcnas.models.onnx_export import require_onnx

        require_onnx()
        import onnxruntime

        self.version = onnxruntime.__version__

    def time_ms(self, module: nn.Module, input_shape: tuple[int, ...], batch: int) -> float:
        # A module timed again (the second pass) is not exported again: the export is most of the cost.
        key = (id(module), tuple(input_shape), batch)
        if key not in self._exported:
            self._exported[key] = (module, onnx_bytes(module, input_shape, batch))  # the module kept: ids stay unique
        session = ort_session(self._exported[key][1], threads=self.threads)
        feed = {"images": np.random.default_rng(0).standard_normal((batch, *input_shape), dtype=np.float32)}
        return _per_call_ms(lambda: session.run(None, feed))


def runtime_timer(runtime: str, *, threads: int) -> Timer:
    if runtime not in RUNTIMES:
        raise BadInput(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BadInput(f"--threads must be an integer >= 1, got {threads!r}")
    return TorchTimer(threads=threads) if runtime == "torch" else OrtTimer(threads=threads)


def measure_network_ms(config: NetworkConfig, fingerprint: Fingerprint, model: nn.Module | None = None) -> float:
    """A whole network's latency on the fingerprint's runtime, threads and batch (deployed form)."""
    from igcnas.models import build_model

    from igcnas.evaluators.cost import as_designed

    if model is None:
        model = build_model(config, seed=0, form="deployed")
    timer = runtime_timer(fingerprint.runtime, threads=fingerprint.threads)
    with as_designed(model):  # as the table's parts run (and as deployed), not the training fast path
        return timer.time_ms(model, (config.in_channels, config.input_size, config.input_size), fingerprint.batch)


def measure_networks_ms(configs: list[NetworkConfig], fingerprint: Fingerprint) -> list[float]:
    """Whole networks' latencies, each the fastest of PASSES measurements made in turns over the list."""
    from igcnas.models import build_model

    models = [build_model(config, seed=0, form="deployed") for config in configs]
    best = [math.inf] * len(configs)
    for _ in range(PASSES):
        for i, (config, model) in enumerate(zip(configs, models)):
            best[i] = min(best[i], measure_network_ms(config, fingerprint, model=model))
    return best


@dataclass
class LatencyTable:
    """Part latencies (ms) of one device and runtime, and the calibration that turns their sum into a network's.

    A network's prediction is its parts' sum turned into a whole network's latency by ``calibration``.
    """

    fingerprint: Fingerprint
    entries: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=lambda: Calibration())
    calibration_networks: list[dict[str, Any]] = field(default_factory=list)
    build_seconds: float = 0.0

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
        """What the calibration reads: the parts' sum and count, the family, the data at part boundaries."""
        keys = part_keys(config)  # the plan resolved once per prediction (it runs before every trial)
        total, n = self.parts_sum(config, keys)
        boundary = sum(math.prod(k.input_shape) for k in keys[1:]) / 1000.0
        return {"family": config.family, "parts_ms": total, "parts": n, "boundary_kilo_elements": boundary}

    def predict(self, config: NetworkConfig) -> float:
        features = self.features(config)
        # A fitted line can go below zero far outside the networks it was fitted on; a network never costs
        # less than a small share of its parts measured alone.
        return max(self.calibration.apply(features), 0.25 * features["parts_ms"])

    def covers(self, config: NetworkConfig) -> bool:
        return not self.missing(config)

    # ---- building --------------------------------------------------------------------------------------
    def add(self, configs: Iterable[NetworkConfig], *, progress: Callable[[int, int], None] | None = None) -> int:
        """Time every part of ``configs`` not yet in the table; returns how many were timed."""
        timer = runtime_timer(self.fingerprint.runtime, threads=self.fingerprint.threads)
        todo: dict[str, Part] = {}
        for config in configs:
            self._check_shape(config)
            if all(k.key in self.entries or k.key in todo for k in part_keys(config)):
                continue
            for part in network_parts(config):
                if part.key not in self.entries and part.key not in todo:
                    todo[part.key] = part
        # Every part is timed in PASSES passes, minutes apart, and keeps its fastest: a burst of other work
        # on the machine during one part's few milliseconds inflated single entries by up to 60% here.
        best: dict[str, float] = {}
        for round_index in range(PASSES):
            for done, part in enumerate(todo.values(), 1):
                ms = timer.time_ms(part.module, part.input_shape, self.fingerprint.batch)
                best[part.key] = min(ms, best.get(part.key, math.inf))
                if progress is not None:
                    progress(round_index * len(todo) + done, PASSES * len(todo))
        for part in todo.values():
            self.entries[part.key] = round(best[part.key], 5)
            self.labels[part.key] = part.label
        return len(todo)

    def calibrate(self, configs: list[NetworkConfig]) -> None:
        """Fit the calibration on whole networks measured here (least squares; identity when too few)."""
        from igcnas.search_space.enumerate import arch_id

        measured = measure_networks_ms(configs, self.fingerprint)
        rows = [{"arch": arch_id(config), **self.features(config), "measured_ms": ms}
                for config, ms in zip(configs, measured)]
        if not rows:  # nothing new to fit on: an extended table keeps its calibration
            return
        # An extended table fits on its earlier networks too (their measurements stand), so that a table
        # serving several spaces keeps predicting the families of the first ones.
        new = {r["arch"] for r in rows}
        self.calibration_networks = [r for r in self.calibration_networks if r["arch"] not in new] + rows
        self.calibration = choose_calibration(self.calibration_networks)

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
        return here

    def save(self, path: str | Path) -> Path:
        """Write the table (gzip JSON) through a temporary file: a failed write leaves the old one whole."""
        path = Path(path)
        data = {"format": TABLE_FORMAT, "fingerprint": asdict(self.fingerprint),
                "calibration": self.calibration.as_dict(), "calibration_networks": self.calibration_networks,
                "build_seconds": self.build_seconds, "entries": self.entries, "labels": self.labels}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        try:
            with gzip.open(temporary, "wt", encoding="utf-8") as handle:
                json.dump(data, handle, indent=0, sort_keys=True)
            temporary.replace(path)
        finally:
            temporary.unlink(missing_ok=True)
        return path

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
                   build_seconds=float(data.get("build_seconds", 0.0)))


@dataclass(frozen=True)
class Calibration:
    """How a network's part latencies turn into its own: ``scale * sum + per_part(family) * (parts - 1) + offset``.

    The per-part term is what a part pays in isolation and not inside a network, or the reverse: a
    runtime's per-call cost, and, in ONNX Runtime, the layout conversions (to and from its blocked
    NCHWc layout) every isolated part does at its edges while a network of plain convolutions stays in
    that layout from unit to unit. The latter depends on the family, hence a term per family.
    """

    name: str = "sum"
    scale: float = 1.0
    per_part: float = 0.0
    offset: float = 0.0
    per_part_by_family: dict[str, float] = field(default_factory=dict)
    per_kilo_element: float = 0.0  # per 1,000 activation elements crossing a part boundary (per image)

    def apply(self, row: dict[str, Any]) -> float:
        """The network's latency from its :func:`network_features` (``parts_ms``, ``parts``, ``family``, ...)."""
        by_family = self.per_part_by_family
        extra = by_family.get(row["family"], statistics.fmean(by_family.values()) if by_family else 0.0)
        return (self.scale * row["parts_ms"] + (self.per_part + extra) * (row["parts"] - 1)
                + self.per_kilo_element * row["boundary_kilo_elements"] + self.offset)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The calibrations tried, simplest first: the terms each one fits (the scale stays 1 unless fitted).
_CALIBRATIONS: dict[str, tuple[str, ...]] = {
    "sum": (), "offset": ("offset",), "per_part": ("per_part", "offset"), "full": ("scale", "per_part", "offset"),
    "full_boundary": ("scale", "per_part", "boundary", "offset"), "per_family": ("per_family", "offset"),
    "per_family_scaled": ("scale", "per_family", "offset"),
}


def _fit(rows: list[dict[str, Any]], name: str) -> Calibration:
    terms = _CALIBRATIONS[name]
    if not terms:
        return Calibration()
    families = sorted({r["family"] for r in rows}) if "per_family" in terms else []
    columns: list[tuple[str, Callable[[dict[str, Any]], float]]] = []
    if "scale" in terms:
        columns.append(("scale", lambda r: r["parts_ms"]))
    if "per_part" in terms:
        columns.append(("per_part", lambda r: r["parts"] - 1))
    if "boundary" in terms:
        columns.append(("boundary", lambda r: r["boundary_kilo_elements"]))
    for family in families:
        columns.append((f"family:{family}", lambda r, f=family: (r["parts"] - 1) * (r["family"] == f)))
    columns.append(("offset", lambda r: 1.0))
    design = np.array([[column(r) for _, column in columns] for r in rows], dtype=float)
    target = np.array([r["measured_ms"] for r in rows])
    fixed = 0.0 if "scale" in terms else np.array([r["parts_ms"] for r in rows])  # the sum at scale 1
    weights = 1.0 / target  # relative errors matter: the acceptance is a share within +-10%
    solved, *_ = np.linalg.lstsq(design * weights[:, None], (target - fixed) * weights, rcond=None)
    values = dict(zip([label for label, _ in columns], (float(v) for v in solved)))
    return Calibration(name=name, scale=values.get("scale", 1.0), per_part=values.get("per_part", 0.0),
                       offset=values["offset"], per_part_by_family={f: values[f"family:{f}"] for f in families},
                       per_kilo_element=values.get("boundary", 0.0))


def choose_calibration(rows: list[dict[str, Any]], names: Iterable[str] = tuple(_CALIBRATIONS)) -> Calibration:
    """The calibration with the smallest leave-one-out relative error on ``rows`` (plain sum when few).

    More fitted terms are only kept when they predict networks left out of the fit better: with few or
    similar calibration networks a many-term fit can match them and miss everything else.
    """
    best, best_error = Calibration(), float("inf")
    families = len({r["family"] for r in rows})
    for name in names:
        terms = _CALIBRATIONS[name]
        n_terms = len(terms) - ("per_family" in terms) + (families if "per_family" in terms else 0)
        if len(rows) < n_terms + 3 or ("per_family" in terms and len(rows) < 3 * families):
            continue
        errors = []
        for i, row in enumerate(rows):
            fit = _fit(rows[:i] + rows[i + 1:], name)
            errors.append(abs(fit.apply(row) / row["measured_ms"] - 1.0))
        error = float(np.mean(errors)) if errors else 0.0
        log.info("calibration %s: leave-one-out mean relative error %.3f", name, error)
        if error < best_error - 1e-9:
            best, best_error = _fit(rows, name), error
    return best


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


def calibration_size(spec: Any) -> int:
    """Whole networks measured to calibrate by default: two per (family, width) cell of the space, at least 16.

    Measured on the default digits space (35 cells): calibrating on 70 networks rather than 35 raised
    the share of held-out predictions within +-10% from 0.87 to about 0.93 in ONNX Runtime (repeated
    70/25 splits of 95 measured networks), where single networks cost about 10 microseconds.
    """
    return max(16, 2 * len(spec.families) * len(spec.widths))  # and enough to choose a fit on in small spaces


def build_table(spec: Any, *, runtime: str, threads: int = 1, batch: int = 1, table: LatencyTable | None = None,
                fits: Callable[[NetworkConfig], bool] | None = None, calibration: int | None = None, seed: int = 0,
                force: bool = False, progress: Callable[[int, int], None] | None = None,
                calibration_exclude: Iterable[NetworkConfig] = ()) -> LatencyTable:
    """Time every part ``spec`` (within ``fits``) can produce that ``table`` lacks, then calibrate.

    A table measured on this device and runtime is extended (reusable across studies and spaces);
    one measured elsewhere is refused unless ``force``. ``calibration_exclude``: networks never to
    calibrate with (a benchmark's held-out networks).
    """
    start = time.perf_counter()
    here = Fingerprint.here(runtime=runtime, threads=threads, batch=batch, input_size=spec.input_size,
                            in_channels=spec.in_channels)
    if table is None:
        table = LatencyTable(fingerprint=here)
    else:
        table.check(here, force=force)
    configs = space_configs(spec, fits=fits)
    default = calibration is None
    if default:
        calibration = calibration_size(spec)
    try:
        calibrating = (sample_configs(spec, calibration, seed=seed, fits=fits, exclude=calibration_exclude)
                       if calibration else [])
    except TooFew as few:
        if not default:
            raise BadInput(f"--calibration {calibration}: {few}") from None
        calibrating = few.found  # a small space: every network it has

    log.info("latency table: %d networks cover the space; timing the parts not yet in the table", len(configs))
    table.add([*configs, *calibrating], progress=progress)
    table.calibrate(calibrating)
    table.build_seconds = round(table.build_seconds + time.perf_counter() - start, 1)
    return table
