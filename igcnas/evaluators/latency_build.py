"""Building a latency table for a search space: which networks cover it, calibrate it and check it.

Every part the space can produce must be in the table (:func:`space_configs`, the space's covering
networks), the calibration is fitted on whole networks drawn across the space (:func:`calibration_size`
of them), and the table's stated error is measured on other networks, held out from the fit
(:data:`HOLDOUT_MIN` at least). The draws are the search's own genome's, seeded, so a build is repeatable;
what the table does with the figures is :mod:`igcnas.evaluators.latency_table`'s.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from igcnas.errors import BadInput
from igcnas.evaluators.latency_runtime import Fingerprint, Runner
from igcnas.evaluators.latency_table import LatencyTable
from igcnas.evaluators.timing import reference_us
from igcnas.search_space.config import NetworkConfig

__all__ = ["HOLDOUT_MIN", "TooFew", "build_table", "calibration_size", "sample_configs", "space_configs"]

log = logging.getLogger(__name__)


def space_configs(spec: Any, *, fits: Callable[[NetworkConfig], bool] | None = None) -> list[NetworkConfig]:
    """The networks whose parts a table for ``spec`` needs (:meth:`DesignSpace.covering`)."""
    from igcnas.search_space.design_space import DesignSpace
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
    table.start_build()
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
