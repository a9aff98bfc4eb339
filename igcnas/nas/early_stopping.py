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
with the study's own trials as the rung population (kept incrementally by a
:class:`RungIndex`, so a check does not grow with the study), and the Ray
backend wraps it as a Tune ``TrialScheduler`` whose rungs start from the same
records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from igcnas.nas.selection import dominance_matrix, dominates
from igcnas.errors import BadInput

__all__ = ["RungSchedule", "RungEntry", "StoppedAtRung", "domination_counts", "promotion_threshold", "should_promote",
           "rung_population", "fidelity_key", "study_rung_records", "rung_peers", "RungIndex"]

Record = tuple[Sequence[float], float, float]  # (per-epoch accuracy curve, params, MACs) of one trial


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


def promotion_threshold(counts: np.ndarray, eta: int) -> int:
    """The largest domination count still promoted in a rung population with these ``counts``: that of its
    ``ceil(n / eta)``-th best member (ties at the threshold are promoted)."""
    quota = max(1, math.ceil(len(counts) / eta))
    return int(np.partition(counts, quota - 1)[quota - 1])


def should_promote(own: RungEntry, peers: Sequence[RungEntry], eta: int) -> tuple[bool, int, int]:
    """Whether ``own`` goes on past this rung, given the ``peers`` recorded at the same rung before it.

    Returns (promote, how many dominate ``own``, the largest count still promoted). The population is
    the peers plus ``own``; the best ``ceil(n / eta)`` of it by domination count set the threshold, and
    ties at the threshold are promoted. With no peers a trial is always promoted.
    """
    counts = domination_counts(list(peers) + [own])
    threshold = promotion_threshold(counts, eta)
    mine = int(counts[-1])
    return mine <= threshold, mine, threshold


def rung_population(records: Iterable[Record], epoch: int) -> list[RungEntry]:
    """Rung members from (per-epoch accuracy curve, params, MACs) of earlier trials: those that reached ``epoch``."""
    return [_entry(record, epoch) for record in records if len(record[0]) >= epoch]


def fidelity_key(*, epochs: int, batch_size: int, lr: float, max_batches_per_epoch: int | None,
                 recalibrate_plain: bool) -> str:
    """Trials are comparable at a rung only when trained with the same schedule (the cosine decay spans
    the planned epochs) and evaluated the same way (BatchNorm re-estimated or not), so each trial records
    this key and rung populations are filtered on it."""
    capped = f"/cap{max_batches_per_epoch}" if max_batches_per_epoch else ""
    return f"{epochs}ep/b{batch_size}/lr{lr:g}{capped}" + ("/bn" if recalibrate_plain else "")


def rung_record(t: Any, fidelity: str) -> Record | None:
    """(curve, params, MACs) of trial ``t`` when it was trained with schedule ``fidelity``, else None."""
    from igcnas.nas.records import TrialKey, record_of

    attrs = record_of(t.user_attrs)
    if attrs.get(TrialKey.FIDELITY) != fidelity or TrialKey.PARAMS not in attrs or TrialKey.MACS not in attrs:
        return None
    return attrs.get(TrialKey.CURVE) or [], attrs[TrialKey.PARAMS], attrs[TrialKey.MACS]


def study_rung_records(trials: Iterable[Any], fidelity: str, *, exclude: int | None = None) -> list[Record]:
    """(curve, params, MACs) of the recorded trials trained with schedule ``fidelity`` (trial ``exclude`` left out).

    A trial's curve grows epoch by epoch while it trains, so running trials count at the rungs they
    have passed; trials of another schedule are never compared (see :func:`fidelity_key`).
    """
    out = []
    for t in trials:
        if t.number != exclude and (record := rung_record(t, fidelity)) is not None:
            out.append(record)
    return out


def rung_peers(trials: Iterable[Any], fidelity: str, epoch: int, *, exclude: int | None = None) -> list[RungEntry]:
    """The population of the rung at ``epoch``: recorded trials of the same schedule that reached it."""
    return rung_population(study_rung_records(trials, fidelity, exclude=exclude), epoch)


def _points(entries: Sequence[RungEntry]) -> np.ndarray:
    """Minimisation form (-accuracy, params, MACs), one row per entry."""
    return np.array([(-e.accuracy, e.params, e.macs) for e in entries], dtype=float).reshape(-1, 3)


class _Rung:
    """Finished trials at one rung, and how many of them dominate each (kept up to date as members join).

    A member's entry (accuracy at the rung epoch, params, MACs) never changes once the trial has passed
    the rung, so a joining member costs one comparison with each member instead of a new matrix of all.
    """

    block = 512  # members compared at a time when many join at once (bounds the temporaries)

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self.position: dict[int, int] = {}
        self.points = np.empty((0, 3))
        self.counts = np.empty(0, dtype=np.int64)

    def add(self, numbers: Sequence[int], points: np.ndarray) -> None:
        for start in range(0, len(numbers), self.block):
            new = points[start:start + self.block]
            counts = dominates(self.points, new).sum(axis=0) + dominates(new, new).sum(axis=0)
            self.counts = np.concatenate([self.counts + dominates(new, self.points).sum(axis=0), counts])
            self.points = np.vstack([self.points, new])
            for number in numbers[start:start + self.block]:
                self.position[number] = len(self.numbers)
                self.numbers.append(number)


class RungIndex:
    """The rung populations of one schedule (``fidelity``) in one study, kept incrementally in this process.

    Fed what a :class:`~igcnas.nas.population.TrialFeed` reads (trials finished since the last read, and
    every unfinished one), it gives the same peers as :func:`rung_peers` over all trials and the same
    decision as :func:`should_promote` on them, without rereading finished trials or recounting their
    dominations: finished members are kept per rung with their domination counts, unfinished ones (as
    many as there are workers) are compared afresh at each check. Not thread-safe: its owner serialises.
    """

    def __init__(self, fidelity: str, eta: int) -> None:
        self.fidelity, self.eta = fidelity, eta
        self._finished: dict[int, Record] = {}
        self._unfinished: dict[int, Record] = {}
        self._rungs: dict[int, _Rung] = {}

    def update(self, finished: Iterable[Any], unfinished: Iterable[Any]) -> None:
        """Take in trials that finished since the last update, and the unfinished ones as they are now."""
        joined: dict[int, list[tuple[int, RungEntry]]] = {}
        for t in finished:
            record = rung_record(t, self.fidelity)
            if record is None or t.number in self._finished:
                continue
            self._finished[t.number] = record
            for epoch in self._rungs:
                if len(record[0]) >= epoch:
                    joined.setdefault(epoch, []).append((t.number, _entry(record, epoch)))
        for epoch, members in joined.items():
            self._rungs[epoch].add([n for n, _ in members], _points([e for _, e in members]))
        self._unfinished = {t.number: r for t in unfinished if (r := rung_record(t, self.fidelity)) is not None}

    def _rung(self, epoch: int) -> _Rung:
        rung = self._rungs.get(epoch)
        if rung is None:  # first check at this rung in this process: every finished member at once
            rung = self._rungs[epoch] = _Rung()
            members = [(n, _entry(r, epoch)) for n, r in sorted(self._finished.items()) if len(r[0]) >= epoch]
            rung.add([n for n, _ in members], _points([e for _, e in members]))
        return rung

    def _unfinished_at(self, epoch: int, exclude: int | None) -> list[tuple[int, RungEntry]]:
        return [(n, _entry(r, epoch)) for n, r in sorted(self._unfinished.items())
                if n != exclude and n not in self._finished and len(r[0]) >= epoch]

    def peers(self, epoch: int, *, exclude: int | None = None) -> list[RungEntry]:
        """The rung's population as :func:`rung_peers` gives it over all trials (ordered by trial number)."""
        rung = self._rung(epoch)
        members = [(n, _entry(self._finished[n], epoch)) for n in rung.numbers if n != exclude]
        return [e for _, e in sorted(members + self._unfinished_at(epoch, exclude), key=lambda m: m[0])]

    def decide(self, own: RungEntry, epoch: int, *, exclude: int | None = None) -> tuple[bool, int, int, int]:
        """:func:`should_promote` of ``own`` against :meth:`peers`, plus the population size (peers + own)."""
        rung = self._rung(epoch)
        points, counts = rung.points, rung.counts
        if exclude is not None and exclude in rung.position:  # a finished member asked about itself
            keep = np.arange(len(points)) != rung.position[exclude]
            counts = counts[keep] - dominates(points[~keep], points[keep])[0]
            points = points[keep]
        extra = _points([e for _, e in self._unfinished_at(epoch, exclude)] + [own])
        # Counts within peers + own: the kept members' counts plus the unfinished and own that dominate them.
        member_counts = counts + dominates(extra, points).sum(axis=0)
        extra_counts = dominates(points, extra).sum(axis=0) + dominates(extra, extra).sum(axis=0)
        everyone = np.concatenate([member_counts, extra_counts])
        threshold = promotion_threshold(everyone, self.eta)
        mine = int(extra_counts[-1])
        return mine <= threshold, mine, threshold, len(everyone)


def _entry(record: Record, epoch: int) -> RungEntry:
    curve, params, macs = record
    return RungEntry(float(curve[epoch - 1]), float(params), float(macs))
