"""Multi-objective asynchronous successive halving (the MO-ASHA idea), backend-free.

Optuna cannot prune multi-objective studies and Ray Tune's schedulers rank one
metric, yet here two of the three objectives (params, MACs) are known exactly
before training. So a trial is trained in rungs of increasing epochs; when it
reaches a rung it is compared with every trial that reached the same rung
before it, on (accuracy at that rung, params, MACs), and it goes on only if
no more rung members dominate it than dominate the best ``1/eta`` of them.
A trial that nothing at its rung dominates always goes on, so a small network
with modest accuracy is kept as readily as a large accurate one: both may end
on the front. Decisions use only what has already been recorded, so workers
never wait for a rung to fill (asynchronous, as in ASHA).

This module holds the rule and the rung bookkeeping (which recorded trials
make a rung's population); the Optuna backend applies it inside the objective
with the study's own trials as the rung population, and the Ray backend wraps
it as a Tune ``TrialScheduler`` whose rungs start from the same records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from igcnas.nas.selection import dominance_matrix
from igcnas.errors import BadInput

__all__ = ["RungSchedule", "RungEntry", "StoppedAtRung", "domination_counts", "should_promote", "rung_population",
           "fidelity_key", "study_rung_records", "rung_peers"]


class StoppedAtRung(Exception):
    """Raised from the epoch callback when a trial is not promoted; the trial ends as pruned."""

    def __init__(self, epoch: int, accuracy: float, dominated_by: int, threshold: int, population: int) -> None:
        self.epoch, self.accuracy = epoch, accuracy
        self.dominated_by, self.threshold, self.population = dominated_by, threshold, population
        super().__init__(f"stopped at rung epoch {epoch}: accuracy {accuracy:.4f} is dominated by {dominated_by} of "
                         f"{population - 1} trials at this rung (promotion needs <= {threshold})")


@dataclass(frozen=True, kw_only=True)
class RungSchedule:
    """Rungs at ``min_epochs * eta**k`` epochs, below the full ``max_epochs`` (which is not a rung)."""

    max_epochs: int
    min_epochs: int = 1
    eta: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.eta, int) or self.eta < 2:
            raise BadInput(f"eta must be an integer >= 2, got {self.eta!r}")
        if not isinstance(self.min_epochs, int) or self.min_epochs < 1:
            raise BadInput(f"min-epochs (first rung) must be an integer >= 1, got {self.min_epochs!r}")
        if not isinstance(self.max_epochs, int) or self.max_epochs < 1:
            raise BadInput(f"epochs must be an integer >= 1, got {self.max_epochs!r}")

    @property
    def rungs(self) -> tuple[int, ...]:
        out = []
        epoch = self.min_epochs
        while epoch < self.max_epochs:
            out.append(epoch)
            epoch *= self.eta
        return tuple(out)


@dataclass(frozen=True)
class RungEntry:
    """One trial at one rung: validation accuracy there, and its exact params and MACs."""

    accuracy: float
    params: float
    macs: float


def domination_counts(entries: Sequence[RungEntry]) -> np.ndarray:
    """For each entry, how many others dominate it (higher-or-equal accuracy, lower-or-equal costs, one strict)."""
    if not entries:
        return np.zeros(0, dtype=int)
    # Minimisation form: (-accuracy, params, macs).
    points = np.array([(-e.accuracy, e.params, e.macs) for e in entries], dtype=float)
    return dominance_matrix(points).sum(axis=0)


def should_promote(own: RungEntry, peers: Sequence[RungEntry], eta: int) -> tuple[bool, int, int]:
    """Whether ``own`` goes on past this rung, given the ``peers`` recorded at the same rung before it.

    Returns (promote, how many dominate ``own``, the largest count still promoted). The population is
    the peers plus ``own``; the best ``ceil(n / eta)`` of it by domination count set the threshold, and
    ties at the threshold are promoted. With no peers a trial is always promoted.
    """
    population = list(peers) + [own]
    counts = domination_counts(population)
    quota = max(1, math.ceil(len(population) / eta))
    threshold = int(np.sort(counts)[quota - 1])
    mine = int(counts[-1])
    return mine <= threshold, mine, threshold


def rung_population(records: Iterable[tuple[Sequence[float], float, float]], epoch: int) -> list[RungEntry]:
    """Rung members from (per-epoch accuracy curve, params, MACs) of earlier trials: those that reached ``epoch``."""
    return [RungEntry(float(curve[epoch - 1]), float(params), float(macs))
            for curve, params, macs in records if len(curve) >= epoch]


def fidelity_key(*, epochs: int, batch_size: int, lr: float, max_batches_per_epoch: int | None) -> str:
    """Trials are comparable at a rung only when trained with the same schedule (the cosine decay spans
    the planned epochs), so each trial records this key and rung populations are filtered on it."""
    capped = f"/cap{max_batches_per_epoch}" if max_batches_per_epoch else ""
    return f"{epochs}ep/b{batch_size}/lr{lr:g}{capped}"


def study_rung_records(trials: Iterable[Any], fidelity: str, *, exclude: int | None = None
                       ) -> list[tuple[Sequence[float], float, float]]:
    """(curve, params, MACs) of the recorded trials trained with schedule ``fidelity`` (trial ``exclude`` left out).

    A trial's curve grows epoch by epoch while it trains, so running trials count at the rungs they
    have passed; trials of another schedule are never compared (see :func:`fidelity_key`).
    """
    from igcnas.nas.records import TrialKey

    out = []
    for t in trials:
        attrs = t.user_attrs
        if t.number == exclude or attrs.get(TrialKey.FIDELITY) != fidelity:
            continue
        if TrialKey.PARAMS in attrs and TrialKey.MACS in attrs:
            out.append((attrs.get(TrialKey.CURVE) or [], attrs[TrialKey.PARAMS], attrs[TrialKey.MACS]))
    return out


def rung_peers(trials: Iterable[Any], fidelity: str, epoch: int, *, exclude: int | None = None) -> list[RungEntry]:
    """The population of the rung at ``epoch``: recorded trials of the same schedule that reached it."""
    return rung_population(study_rung_records(trials, fidelity, exclude=exclude), epoch)
