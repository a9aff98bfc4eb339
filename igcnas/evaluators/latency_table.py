"""Latency predicted before training: a per-device, per-runtime table of the parts networks are made of.

On a device, MACs mislead: IGC networks are memory- and dispatch-bound, and the runtime changes their
order (PyTorch eager against ONNX Runtime). Measuring every candidate network would cost more than the
search; the parts they are built from repeat (:mod:`.latency_parts`). Each distinct part is timed once,
in isolation, at a fixed batch and thread count, by the project's one timer (:mod:`.timing`, through
:mod:`.latency_runtime`); a network's latency is predicted as the sum over its parts turned into a whole
network's by a calibration fitted on whole networks (:mod:`.latency_fit`), and the table states its own
error on networks held out from the fit. Which networks a table is built from is :mod:`.latency_build`'s.

The table is tied to where it was measured (:class:`~igcnas.evaluators.latency_runtime.Fingerprint`: CPU
model, cores, runtime and version, threads, batch, input shape): figures from another device or runtime
are refused unless forced.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from igcnas.errors import BadInput
from igcnas.evaluators.latency_fit import Assessment, Calibration, assess, choose_calibration, predict_from_features
from igcnas.evaluators.latency_parts import Part, PartKey, network_parts, part_keys
from igcnas.evaluators.latency_runtime import Fingerprint, Runner, measure_networks, runtime_runner, time_modules
from igcnas.evaluators.timing import Timing, note_reference
from igcnas.files import atomic_write
from igcnas.search_space.config import NetworkConfig

__all__ = ["TABLE_FORMAT", "LatencyTable"]

log = logging.getLogger(__name__)

TABLE_FORMAT = 2  # bumped when the keys or the timing method change (old tables are then refused)


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
    def start_build(self) -> None:
        """Forget the busy-timer counts of earlier builds: a build's assessment judges its own figures only."""
        self._figures = [0, 0]

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
