"""Replay a search against the tabular benchmark on a simulated clock (no training).

A replay is the search loop with the trainer replaced by table look-ups: a real in-memory Optuna study
with the sampler under test, ``n_workers`` simulated asynchronous workers, the same seeding (enqueued
trials), and the search's own early-stopping rule (:func:`igcnas.nas.early_stopping.should_promote`
against the rung entries recorded earlier in simulated time). A free worker asks the study for a
trial, decodes the architecture with the arm's ``suggest`` function, looks it up by ``arch_id``, draws
one of the table's training seeds with the run's RNG, and is busy for ``seconds x epochs / 4`` of
simulated time (the table's measured training time of that seed). Everything is deterministic given
``seed``, so arms differ only in how they choose networks, and 30 seeds cost seconds rather than hours.

Hypervolume (one definition for every arm and for ``bench/search_efficiency.py``): points are
``(1 - accuracy, s(params), s(MACs))`` where ``s`` scales log costs linearly onto [0, 1] between the
smallest and largest network of the table; reference point ``(1, 1.05, 1.05)``, so the cheapest and
the most expensive networks still add volume. A run's hypervolume counts the trials it completed (all
epochs), with the accuracy it observed (its drawn training seed); it is divided by the hypervolume of
the whole table's front with accuracy averaged over the table's seeds. A run can slightly exceed 1
when a seed it drew was luckier than the average.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from igcnas.nas.early_stopping import RungEntry, RungSchedule, fidelity_key, should_promote
from igcnas.nas.options import SearchOptions
from igcnas.nas.records import TrialKey, TrialRecorder, TrialStatus

if TYPE_CHECKING:
    import optuna

    from igc_table import Row
    from igcnas.search_space.config import NetworkConfig
    from igcnas.search_space.spec import SearchSpec

__all__ = ["HVReference", "REFERENCE_POINT", "TrialLog", "Run", "replay", "table_front_hv", "FrontTracker",
           "DEFAULT_SCHEDULE"]

REFERENCE_POINT = (1.0, 1.05, 1.05)
# The search's default: rungs at epochs 1 and 3 of 4.
DEFAULT_SCHEDULE = SearchOptions().rung_schedule  # the search's own default rungs
# The fidelity key a search at the table's settings records (TrainSettings defaults).
TABLE_FIDELITY = fidelity_key(epochs=4, batch_size=64, lr=0.05, max_batches_per_epoch=None,
                              recalibrate_plain=False)  # the table holds accuracy as measured


@dataclass(frozen=True)
class HVReference:
    """The log-cost scaling of the hypervolume: bounds are the table's cheapest and dearest networks."""

    min_params: float
    max_params: float
    min_macs: float
    max_macs: float

    @classmethod
    def from_rows(cls, rows: Iterable[Row]) -> HVReference:
        rows = list(rows)
        return cls(min_params=min(r.params for r in rows), max_params=max(r.params for r in rows),
                   min_macs=min(r.macs for r in rows), max_macs=max(r.macs for r in rows))

    @staticmethod
    def _scale(value: float, lo: float, hi: float) -> float:
        if hi <= lo:
            return 0.0
        return min(max((math.log(max(value, 1.0)) - math.log(lo)) / (math.log(hi) - math.log(lo)), 0.0), 1.0)

    def point(self, accuracy: float, params: float, macs: float) -> tuple[float, float, float]:
        return (1.0 - accuracy, self._scale(params, self.min_params, self.max_params),
                self._scale(macs, self.min_macs, self.max_macs))


class FrontTracker:
    """The non-dominated set of points added so far and its hypervolume (recomputed only when the front moves)."""

    def __init__(self, reference: Sequence[float] = REFERENCE_POINT) -> None:
        self.ref = np.asarray(reference, dtype=float)
        self.front = np.empty((0, len(reference)))
        self.value = 0.0

    def add(self, point: Sequence[float]) -> float:
        from optuna._hypervolume import compute_hypervolume

        p = np.asarray(point, dtype=float)
        if not (p < self.ref).all():
            return self.value
        front = self.front
        if len(front) and ((front <= p).all(axis=1)).any():  # dominated by (or equal to) a front point
            return self.value
        keep = ~((p <= front).all(axis=1))
        self.front = np.vstack([front[keep], p])
        self.value = float(compute_hypervolume(self.front, self.ref, assume_pareto=True))
        return self.value


def table_front_hv(table: dict[str, Row], reference: HVReference) -> float:
    """Hypervolume of every network of the table, accuracy averaged over the table's training seeds."""
    tracker = FrontTracker()
    for row in table.values():
        tracker.add(reference.point(row.final_accuracy(), row.params, row.macs))
    return tracker.value


@dataclass
class TrialLog:
    """What happened to one trial of a replay (times in simulated seconds)."""

    number: int
    arch_id: str
    seed: int
    start_s: float
    end_s: float
    status: str  # TrialStatus value; RUNNING when the budget ran out first
    epochs: int
    accuracy: float  # validation accuracy at the last epoch it trained


@dataclass
class Run:
    """A replay's outcome: the normalised hypervolume after each completion, and every trial."""

    budget_s: float
    n_workers: int
    times: list[float] = field(default_factory=list)  # simulated completion times
    hv: list[float] = field(default_factory=list)  # normalised hypervolume after each completion
    trials: list[TrialLog] = field(default_factory=list)
    study: Any = None

    def hv_at(self, t: float) -> float:
        """Normalised hypervolume of the trials completed by simulated time ``t``."""
        i = bisect.bisect_right(self.times, t)
        return self.hv[i - 1] if i else 0.0

    def count(self, status: str) -> int:
        return sum(1 for t in self.trials if t.status == status)

    @property
    def final_hv(self) -> float:
        return self.hv[-1] if self.hv else 0.0


def replay(*, table: dict[str, Row], spec: SearchSpec, sampler: optuna.samplers.BaseSampler, budget_s: float,
           n_workers: int = 4, schedule: RungSchedule | None = DEFAULT_SCHEDULE, seed: int,
           seeds_to_enqueue: Sequence[dict[str, Any]] = (),
           suggest: Callable[[optuna.Trial], NetworkConfig] | None = None,
           reference: HVReference | None = None, true_front_hv: float | None = None,
           arch_cache: dict[Any, str] | None = None) -> Run:
    """Simulate one search of ``budget_s`` simulated seconds on ``n_workers`` workers; see the module docstring.

    ``spec`` is the space searched (the table's, or a subset of it: every network asked for must be in
    ``table``); ``suggest`` turns a trial into a network, by default the search's own
    ``igcnas.nas.gene_suggestions.suggest_config`` over ``spec``'s genome. ``reference`` and ``true_front_hv``
    are computed from ``table`` when not given (pass them in to save the work across many replays).
    ``arch_cache`` maps a configuration to its arch_id across replays (hashing the resolved plan is the
    costliest look-up).
    """
    import optuna

    from igcnas.search_space.enumerate import arch_id

    if suggest is None:
        from igcnas.nas.gene_suggestions import suggest_config
        from igcnas.search_space.genome import genome_for

        genome = genome_for(spec)

        def suggest(trial: optuna.Trial) -> NetworkConfig:
            return suggest_config(trial, genome)
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    reference = reference or HVReference.from_rows(table.values())
    true_hv = true_front_hv if true_front_hv is not None else table_front_hv(table, reference)
    cache: dict[Any, str] = arch_cache if arch_cache is not None else {}
    max_epochs = min(row.epochs for row in table.values())
    if schedule is not None and schedule.max_epochs != max_epochs:
        raise ValueError(f"the schedule trains {schedule.max_epochs} epochs but the table has {max_epochs}")
    rungs = set(schedule.rungs) if schedule is not None else set()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    for params in seeds_to_enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=False)
    rng = random.Random(seed)
    run = Run(budget_s=budget_s, n_workers=n_workers, study=study)
    tracker = FrontTracker()
    rung_entries: dict[int, list[RungEntry]] = {e: [] for e in rungs}
    # Per running trial: (optuna trial, its recorder, row, training seed, curve so far, log index).
    running: dict[int, tuple[Any, Any, Row, int, list[float], int]] = {}
    events: list[tuple[float, int, int, int]] = []  # (time, sequence, trial number, epoch reached)
    sequence = 0

    def start(now: float) -> None:
        nonlocal sequence
        trial = study.ask()
        config = suggest(trial)
        aid = cache.get(config)
        if aid is None:
            aid = cache[config] = arch_id(config)
        row = table.get(aid)
        if row is None:
            raise KeyError(f"trial {trial.number} asked for {aid} ({config.family}), which is not in the table")
        train_seed = rng.choice(sorted(row.curves))
        record = TrialRecorder(trial)
        record.write({TrialKey.ARCH_ID: aid, TrialKey.FAMILY: row.family, TrialKey.WIDTH: row.width,
                      TrialKey.BLOCKS: row.blocks, TrialKey.PARAMS: row.params, TrialKey.MACS: row.macs,
                      TrialKey.FIDELITY: TABLE_FIDELITY, TrialKey.STATUS: TrialStatus.RUNNING})
        run.trials.append(TrialLog(number=trial.number, arch_id=aid, seed=train_seed, start_s=now, end_s=math.nan,
                                   status=TrialStatus.RUNNING.value, epochs=0, accuracy=math.nan))
        running[trial.number] = (trial, record, row, train_seed, [], len(run.trials) - 1)
        per_epoch = row.seconds[train_seed] / max_epochs
        heapq.heappush(events, (now + per_epoch, sequence, trial.number, 1))
        sequence += 1

    for _ in range(n_workers):
        start(0.0)
    while events:
        now, _, number, epoch = heapq.heappop(events)
        if now > budget_s:
            break  # the heap is ordered by time: nothing later fits in the budget either
        trial, record, row, train_seed, curve, log_index = running[number]
        accuracy = row.curves[train_seed][epoch - 1]
        curve.append(accuracy)
        record.write({TrialKey.CURVE: list(curve)})
        log = run.trials[log_index]
        log.epochs, log.accuracy = epoch, accuracy
        finished = False
        if epoch in rungs:
            own = RungEntry(accuracy, float(row.params), float(row.macs))
            peers = rung_entries[epoch]
            promote, _, _ = should_promote(own, peers, schedule.eta)  # type: ignore[union-attr]
            peers.append(own)  # recorded whatever the decision, as the search's curve attribute is
            record.write({TrialKey.RUNGS: {str(e): curve[e - 1] for e in sorted(rungs) if e <= epoch}})
            if not promote:
                record.write({TrialKey.STATUS: TrialStatus.STOPPED_EARLY, TrialKey.STOPPED_AT_EPOCH: epoch})
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                log.status, log.end_s = TrialStatus.STOPPED_EARLY.value, now
                finished = True
        if not finished and epoch == max_epochs:
            record.write({TrialKey.STATUS: TrialStatus.COMPLETE})
            study.tell(trial, (accuracy, float(row.params), float(row.macs)))
            log.status, log.end_s = TrialStatus.COMPLETE.value, now
            run.times.append(now)
            run.hv.append(tracker.add(reference.point(accuracy, row.params, row.macs)) / true_hv)
            finished = True
        if finished:
            del running[number]
            if now < budget_s:
                start(now)
        else:
            per_epoch = row.seconds[train_seed] / max_epochs
            heapq.heappush(events, (now + per_epoch, sequence, number, epoch + 1))
            sequence += 1
    return run

