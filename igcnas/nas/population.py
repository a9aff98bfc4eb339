"""The sampler's view of a study: which trials are parents, with what objective vectors.

COMPLETE trials count by their values; trials stopped early by successive halving count by their rung
result (the last accuracy of their curve, their exact params and MACs); over-budget, no-slot and failed
trials are not parents. Also the architectures a study has already tried, so no child repeats one.

Also here: :class:`TrialFeed`, how every per-trial reader of a study (the sampler, the rung check, the
``--total-trials`` checks) reads it incrementally, so that their cost does not grow with the study
(``bench/scale.py`` measures it; ``docs/scaling.md``).
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass
from typing import Any, Container, Mapping, Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from igcnas.nas.budget import named_constraints
from igcnas.nas.objectives import ACCURACY, objectives_for
from igcnas.nas.optuna_adapter import read_by_number, storage_of, study_id_of
from igcnas.nas.records import StudyKey, TrialKey, TrialStatus, record_of
from igcnas.search_space.genome import Genome

__all__ = ["Member", "ParentValues", "has_genes", "arch_of", "members_of", "rung_values", "TrialFeed", "StudyView"]

log = logging.getLogger(__name__)

# Objective names when a study does not list its own (the backends' order, latency last).
_DEFAULT_OBJECTIVES = tuple(o.name for o in objectives_for(latency=True))


@dataclass(frozen=True)
class Member:
    """A parent candidate: its trial number, canonical genes, objectives (minimisation form), violation."""

    number: int
    params: dict[str, Any]  # canonical genes
    values: tuple[float, ...]  # minimisation form
    violation: float  # sum of positive constraint values; 0 = feasible


def has_genes(genome: Genome, params: Any) -> bool:
    """Whether ``params`` carry every gene of ``genome`` (trials of this encoding)."""
    return bool(params) and all(name in params for name in genome.gene_names)


def arch_of(genome: Genome, t: FrozenTrial) -> str | None:
    """The architecture ``t`` tried, runs or has queued: its recorded arch_id, else its genes' (None if unknown)."""
    recorded = record_of(t.user_attrs).get(TrialKey.ARCH_ID)
    if recorded:
        return str(recorded)
    params = t.params if has_genes(genome, t.params) else t.system_attrs.get("fixed_params")
    if has_genes(genome, params):
        try:
            return genome.arch_id(genome.locate(params))
        except ValueError:
            return None
    return None


class ParentValues:
    """A trial's objective vector as a parent (minimisation form), or None when it is no parent.

    The study's directions are read once; its objective names only when a stopped-early trial needs them.
    """

    def __init__(self, genome: Genome, study: optuna.Study) -> None:
        self.genome, self.study = genome, study
        self.signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
        self._objectives: Sequence[str] | None = None

    def __call__(self, t: FrozenTrial) -> tuple[float, ...] | None:
        if not has_genes(self.genome, t.params):
            return None
        n = len(self.signs)
        record = record_of(t.user_attrs) if t.state == TrialState.PRUNED else {}
        if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) == n:
            values: Sequence[float] | None = t.values
        elif record.get(TrialKey.STATUS) == TrialStatus.STOPPED_EARLY:
            if self._objectives is None:
                study = self.study
                self._objectives = (study.metric_names or study.user_attrs.get(StudyKey.OBJECTIVES)
                                    or _DEFAULT_OBJECTIVES)
            values = rung_values(record, self._objectives[:n])
        else:
            return None  # running, failed, over budget, no slot
        if values is None or len(values) != n or not all(math.isfinite(v) for v in values):
            return None
        return tuple(s * float(v) for s, v in zip(self.signs, values))


def members_of(genome: Genome, finished: Sequence[tuple[FrozenTrial, tuple[float, ...]]]) -> list[Member]:
    """The window's trials as parents: canonical genes (what each parent expressed) and violation."""
    out = []
    for t, values in finished:
        try:
            params = genome.canonical(t.params)
        except ValueError:
            continue  # genes from another space (a changed spec): not breedable here
        violation = sum(max(0.0, v) for v in named_constraints(t.constraints).values())
        out.append(Member(t.number, params, values, violation))
    return out


def rung_values(record: Mapping[str, Any], objectives: Sequence[str]) -> list[float] | None:
    """A stopped-early trial's result at its last rung (from its record, ``record_of``), in the study's
    objective order: the accuracy is the last of its per-epoch curve (the rung where it stopped), the costs
    its recorded ones."""
    curve = record.get(TrialKey.CURVE) or []
    out = []
    for name in objectives:
        if name == ACCURACY.name:
            value = curve[-1] if curve else None
        else:
            value = record.get(name)  # params, macs, latency_ms: recorded under the same names
        if value is None:
            return None
        out.append(float(value))
    return out


class TrialFeed:
    """One reader's incremental view of a study's trials in this process.

    A finished trial never changes again, so a reader that has seen it finished need not look at it
    twice: :meth:`read` returns the trials that finished since the previous read and every trial still
    unfinished (running or waiting), each by number. Scanning all trials at every call instead costs
    time in proportion to the study, at every rung of every trial (``bench/scale.py``).

    The storage's own incremental copy is read through ``optuna_adapter.read_by_number`` (checked by
    tests against the public path); any other storage, or a copy that is not numbered 0 to n - 1, is
    read whole and filtered. Not thread-safe: its owner serialises reads.
    """

    def __init__(self, study: optuna.Study, *, storage_copy: bool = True) -> None:
        """``storage_copy=False``: always the public path (every trial read, then filtered); tests compare
        the two."""
        self.storage, self.study_id = storage_of(study), study_id_of(study)
        self.storage_copy = storage_copy
        self._next = 0  # every trial numbered below has been returned finished, or is in _unfinished
        self._unfinished: set[int] = set()

    def read(self) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """(trials finished since the last read, trials unfinished now), each sorted by number."""
        try:
            trials = (read_by_number(self.storage, self.study_id, self._next, self._unfinished)
                      if self.storage_copy else None)
        except (AttributeError, KeyError, IndexError) as exc:  # another Optuna, or a gap in the copy's numbers
            log.debug("study %d: reading every trial (%s: %s)", self.study_id, type(exc).__name__, exc)
            trials = None
        if trials is None:
            unfinished = self._unfinished
            trials = [t for t in self.storage.get_all_trials(self.study_id, deepcopy=False)
                      if t.number >= self._next or t.number in unfinished]
        finished = [t for t in trials if t.state.is_finished()]
        running = [t for t in trials if not t.state.is_finished()]
        if trials:
            self._next = max(self._next, max(t.number for t in trials) + 1)
        self._unfinished = {t.number for t in running}
        return finished, running


class _Tried:
    """Membership in the architectures tried: finished trials' (kept) or unfinished ones' (read each time)."""

    def __init__(self, finished: set[str], unfinished: set[str]) -> None:
        self._finished, self._unfinished = finished, unfinished

    def __contains__(self, arch: object) -> bool:
        return arch in self._unfinished or arch in self._finished


class StudyView:
    """The sampler's reads of one study, kept up to date through a :class:`TrialFeed`.

    :meth:`tried` answers which architectures the study has tried, runs or has queued; :meth:`parents`
    gives the trials usable as parents, with their objective vectors, oldest first: both read from the
    trials that finished since the last :meth:`refresh` (and the unfinished ones) instead of the whole
    study (``tests/nas/full_scan.py`` reads the whole study every time, the oracle it is checked
    against). Not thread-safe.
    """

    def __init__(self, genome: Genome, study: optuna.Study) -> None:
        self.genome, self.storage = genome, storage_of(study)
        self._feed = TrialFeed(study)
        self._value_of = ParentValues(genome, study)
        self._tried: set[str] = set()  # architectures of finished trials
        self._unfinished: list[FrozenTrial] = []
        self._numbers: list[int] = []  # the parents' trial numbers, ascending
        self._parents: list[tuple[FrozenTrial, tuple[float, ...]]] = []

    def refresh(self) -> None:
        finished, self._unfinished = self._feed.read()
        for t in finished:
            if (arch := arch_of(self.genome, t)) is not None:
                self._tried.add(arch)
            values = self._value_of(t)
            if values is not None:  # trials finish out of order: keep the parents sorted by number
                at = bisect.bisect(self._numbers, t.number)
                self._numbers.insert(at, t.number)
                self._parents.insert(at, (t, values))

    def tried(self, current: int) -> Container[str]:
        """The architectures tried, running or queued, trial ``current`` left out (it is unfinished)."""
        running = {arch for t in self._unfinished
                   if t.number != current and (arch := arch_of(self.genome, t)) is not None}
        return _Tried(self._tried, running)

    @property
    def parent_count(self) -> int:
        return len(self._parents)

    def parents(self, last: int) -> list[tuple[FrozenTrial, tuple[float, ...]]]:
        """The ``last`` most recent parents by number, oldest first."""
        return self._parents[-last:]
