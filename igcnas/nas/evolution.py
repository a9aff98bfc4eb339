"""A steady-state multi-objective evolutionary sampler over the genome's fixed genes.

Why not Optuna's NSGA-II as is: it breeds generation by generation (workers of a short asynchronous
search wait on, or race past, an unfinished generation), its crossovers treat genes as unrelated
numbers, and it ignores trials pruned by successive halving, which are most trials of a search with
rungs. This sampler (an Optuna ``BaseSampler``, so the Optuna backend and Ray Tune's ``OptunaSearch``
use the very same object) breeds one child per ``ask``:

1. **Population**: the most recent ``window`` finished trials (regularised evolution's ageing, so no
   worker waits for a generation): COMPLETE ones by their values, and trials stopped early by
   successive halving by their rung result (last accuracy of the curve, exact params and MACs).
   Over-budget, no-slot and failed trials are not parents. Size ``clip(round(sqrt(n_trials)), 8, 32)``.
2. **Selection**: two binary tournaments on constrained non-dominated rank, then crowding distance.
3. **Crossover per stage**: family, width and blocks from one parent (the donor); each stage's
   genes (``L``, ``pos``, and ``sk``, ``cr`` in a structured space) together from either parent, or from the donor with probability ``family_bias`` when the
   parents differ in family (another family's stage genes still mean "this L, this far up the cost
   order", but are less likely to be what made that parent good).
4. **Mutation** by the genome's validity-keeping moves, each gene with probability ``mutation_rate``
   (``1 / number of genes`` by default, about one move per child): a stage to the neighbouring option in
   cost order, the neighbouring L or (structured) the neighbouring small kernel or channel reduction, width
   and blocks one step, the family at half the rate (the moves come from ``Genome.move_sites``). With tens
   of trials a child must usually be a near copy of a good parent to be worth training.
5. **Rejection**: a child already tried (same ``arch_id``) or over the closed-form budget is bred again
   (``max_tries``), then a random valid network is drawn.
6. **Pre-selection**: ``candidates`` (4) acceptable children are bred and the one that would add the most
   hypervolume to the window's front is trained: params and MACs are exact before training, only the
   accuracy is estimated (the best parent's). This spends the two free objectives before paying for the
   third; ``candidates=1`` switches it off (``bench/sampler_comparison.py`` measures both).

How each child was made is stored on the trial (system attribute ``evolution``: parents' trial numbers,
the source of each stage, the moves), enough to rebuild it from its parents' genes.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from typing import Any, Callable, Container, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial

from igcnas.errors import BadInput
from igcnas.nas.budget import Budget
from igcnas.nas.optuna_adapter import set_trial_system_attr, storage_of, study_id_of
from igcnas.nas.records import SystemKey
from igcnas.nas.population import Member, StudyView, members_of
from igcnas.nas.selection import constrained_ranks, hypervolume_gains
from igcnas.nas.gene_suggestions import gene_distributions
from igcnas.search_space.genome import Genome

__all__ = ["EvolutionarySampler", "population_size_for"]

log = logging.getLogger(__name__)



def population_size_for(n_trials: int | None) -> int:
    """Population (and window) size for a search of ``n_trials``: ``clip(round(sqrt(n)), 8, 32)``, else 16.

    Short searches need a small population so that selection starts early: on the tabular benchmark
    (about 130 trials started, 4 workers; tuned on seeds 100-129, not the reported ones) a population
    of 8-9 reached a hypervolume random search ends with in half the time, 18 did not.
    """
    if n_trials is None:
        return 16
    return int(min(32, max(8, round(math.sqrt(n_trials)))))


def _check_int(name: str, value: Any, low: int, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadInput(f"{name} must be an integer >= {low}{' or None' if optional else ''}, got {value!r}")


def _check_rate(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise BadInput(f"{name} must be a number in [0, 1]{' or None' if optional else ''}, got {value!r}")


class EvolutionarySampler(BaseSampler):
    """Steady-state multi-objective evolution over a :class:`~igcnas.search_space.genome.Genome` (see module).

    ``genome`` is what is bred; ``seed`` seeds its own RNG; ``population_size`` defaults from
    ``n_trials_hint``; ``window`` (recent finished trials that form the population) defaults to the
    population size; ``crossover_rate`` is the share of two-parent children; ``budget_params`` and
    ``budget_macs`` bound bred children (closed form); ``min_parents`` finished trials are needed before
    breeding (before that: random valid networks); ``candidates`` children are bred per proposal and the
    most promising one on the known costs is trained (1: no pre-selection); ``view`` makes its reader of a
    study (``population.StudyView``, incremental; a class, so that it pickles). No lambdas or locks: it pickles.
    """

    def __init__(self, *, genome: Genome, seed: int | None = None, population_size: int | None = None,
                 n_trials_hint: int | None = None, window: int | None = None, mutation_rate: float | None = None,
                 crossover_rate: float = 0.9, family_bias: float = 0.75, budget_params: float | None = None,
                 budget_macs: float | None = None, min_parents: int | None = None, max_tries: int = 50,
                 candidates: int = 4, view: Callable[[Genome, optuna.Study], Any] = StudyView) -> None:
        if not isinstance(genome, Genome):
            raise BadInput(f"genome must be a Genome, got {type(genome).__name__}")
        _check_int("seed", seed, 0)
        _check_int("population_size", population_size, 2)
        _check_int("n_trials_hint", n_trials_hint, 1)
        _check_int("window", window, 2)
        _check_int("min_parents", min_parents, 2)
        _check_int("max_tries", max_tries, 1, optional=False)
        _check_int("candidates", candidates, 1, optional=False)
        _check_rate("mutation_rate", mutation_rate, optional=True)
        _check_rate("crossover_rate", crossover_rate)
        _check_rate("family_bias", family_bias)
        for name, value in (("budget_params", budget_params), ("budget_macs", budget_macs)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0):
                raise BadInput(f"{name} must be a number > 0 or None, got {value!r}")
        self.genome = genome
        self.seed = seed
        self.view = view  # how the sampler reads a study (population.StudyView; tests pass a full-scan oracle)
        self.population_size = population_size if population_size is not None else population_size_for(
            n_trials_hint)
        self.window = window if window is not None else self.population_size
        self.mutation_rate = mutation_rate if mutation_rate is not None else 1.0 / len(genome.genes)
        self.crossover_rate = float(crossover_rate)
        self.family_bias = float(family_bias)
        self.budget_params = budget_params
        self.budget_macs = budget_macs
        self.min_parents = min_parents if min_parents is not None else max(2, self.population_size // 2)
        self.max_tries = max_tries
        self.candidates = candidates
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed=seed)
        self._distributions: dict[str, BaseDistribution] = gene_distributions(genome)
        self._init_views()

    def _init_views(self) -> None:
        # Per study: what this process has read of it (population.StudyView), so that each proposal
        # reads only the trials that finished since the last one; rebuilt after unpickling.
        self._views: dict[int, StudyView] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_views"], state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_views()

    def __repr__(self) -> str:
        return (f"EvolutionarySampler(population_size={self.population_size}, window={self.window}, "
                f"mutation_rate={self.mutation_rate:.3g}, crossover_rate={self.crossover_rate:.3g})")

    # -- BaseSampler ----------------------------------------------------------------------------------

    def reseed_rng(self) -> None:
        self._rng = random.Random()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Every gene, always: the genome's genes are the same in every trial."""
        return dict(self._distributions)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Random draws for what ``sample_relative`` left out (genes of an enqueued trial that fixes only
        some, or parameters outside the genome); any gene value decodes to a valid network."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        if trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued seed: Optuna applies its fixed genes, the rest are drawn independently
        with self._lock:  # n_jobs threads share one sampler (and its view and RNG)
            view = self._views.get(study_id_of(study))
            if view is None or view.storage is not storage_of(study):
                view = self._views[study_id_of(study)] = self.view(self.genome, study)
            view.refresh()
            tried, count, recent = view.tried(trial.number), view.parent_count, view.parents(self.window)
            members = members_of(self.genome, recent)
            if count < self.min_parents or not members:
                child, record = self._random_child(tried, reason=f"{count} of {self.min_parents} parents")
            else:
                child, record = self._breed(members, tried)
        log.debug("trial %d: %s", trial.number, record)
        set_trial_system_attr(study, trial, SystemKey.EVOLUTION, record)
        return {name: child[name] for name in search_space if name in child}

    # -- the population ---------------------------------------------------------------------------------

    @staticmethod
    def _scores(members: Sequence[Member]) -> list[tuple[int, float]]:
        """(rank, crowding) per member: feasible fronts first, then infeasible by violation."""
        return constrained_ranks([m.values for m in members], [m.violation for m in members])

    def _tournament(self, members: Sequence[Member], scores: Sequence[tuple[int, float]]) -> Member:
        if len(members) == 1:
            return members[0]
        a, b = self._rng.sample(range(len(members)), 2)
        (ra, ca), (rb, cb) = scores[a], scores[b]
        return members[a] if (ra, -ca) <= (rb, -cb) else members[b]

    # -- breeding ---------------------------------------------------------------------------------------

    def _breed(self, members: Sequence[Member], tried: Container[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        scores = self._scores(members)
        found: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for attempt in range(1, self.max_tries + 1):
            child, record = self._child(members, scores)
            if self._acceptable(child, tried) and all(child != c for c, _ in found):
                record["tries"] = attempt
                found.append((child, record))
                if len(found) == self.candidates:
                    break
        if not found:
            return self._random_child(tried, reason=f"{self.max_tries} children were all tried or over budget")
        return found[self._preselect(found, members)] if len(found) > 1 else found[0]

    def _preselect(self, found: Sequence[tuple[dict[str, Any], dict[str, Any]]], members: Sequence[Member]) -> int:
        """Which of several children to train: the one whose (estimated accuracy, exact params, exact MACs)
        would add the most hypervolume to the window's front.

        Two of the three objectives are known before training; only accuracy is estimated, optimistically,
        as the best of the child's parents'. Costs are compared on a log scale (networks span orders of
        magnitude). The choice is recorded on the trial (``preselected`` of ``candidates``).
        """
        by_number = {m.number: m for m in members}
        estimates = []
        for child, record in found:
            params, macs = self.genome.costs(self.genome.locate(child))
            accuracy = min(by_number[n].values[0] for n in record["parents"])  # minimisation form: -accuracy
            estimates.append((accuracy, params, macs))
        front = [m.values[:3] for m in members if m.violation <= 0]
        best = int(np.argmax(hypervolume_gains(front, estimates)))
        found[best][1].update(preselected=best, candidates=len(found))
        return best

    def _child(self, members: Sequence[Member], scores: Sequence[tuple[int, float]]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        genome = self.genome
        first = self._tournament(members, scores)
        second = first
        for _ in range(3):
            second = self._tournament(members, scores)
            if second.number != first.number:
                break
        ops: list[str] = []
        if second.number != first.number and self._rng.random() < self.crossover_rate:
            donor, other = (first, second) if self._rng.random() < 0.5 else (second, first)
            bias = self.family_bias if donor.params["family"] != other.params["family"] else 0.5
            child = dict(donor.params)
            stages = []
            for i in range(genome.num_stages):
                source = donor if self._rng.random() < bias else other
                for name in genome.stage_gene_names(i):
                    child[name] = source.params[name]
                stages.append(source.number)
            parents = [donor, other]
            ops.append("crossover")
        else:
            parents, child = [first], dict(first.params)
            stages = [first.number] * genome.num_stages
        child = genome.canonical(child)
        for op in self._mutations(child):
            child = genome.canonical(genome.apply_op(child, op))
            ops.append(op)
        if any(child == p.params for p in parents):
            moves = genome.neighbours(child)
            if moves:
                op, child = self._rng.choice(moves)
                ops.append(op)
        return child, {"parents": [p.number for p in parents], "stages": stages, "ops": ops}

    def _mutations(self, child: dict[str, Any]) -> list[str]:
        """The moves to apply, drawn gene by gene with probability ``mutation_rate`` each: a stage's ``pos``
        gene steps to the neighbouring option, its ``L`` gene to the neighbouring L, its ``sk`` and ``cr``
        genes (structured) one step, ``width`` and ``blocks`` one step; ``family`` switches at half the rate
        (the largest jump). Directions that would change nothing (an end of a range) are not drawn."""
        genome, rng, rate = self.genome, self._rng, self.mutation_rate
        ops = []
        current = child
        for candidates in genome.move_sites():
            if rng.random() >= rate:
                continue
            moved = [(op, genome.canonical(genome.apply_op(current, op))) for op in candidates]
            moved = [(op, there) for op, there in moved if there != current]
            if moved:
                op, current = rng.choice(moved)
                ops.append(op)
        if len(genome.families) > 1 and rng.random() < rate / 2:
            ops.append(f"set_family({rng.choice([f for f in genome.families if f != current['family']])})")
        return ops

    def _acceptable(self, child: dict[str, Any], tried: Container[str]) -> bool:
        point = self.genome.locate(child)
        if self.genome.arch_id(point) in tried:
            return False
        if self.budget_params is None and self.budget_macs is None:
            return True
        params, macs = self.genome.costs(point)
        return Budget(max_params=self.budget_params, max_macs=self.budget_macs).fits(params=params, macs=macs)

    def _random_child(self, tried: Container[str], *, reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A random valid network, new and within budget when one is found in ``max_tries`` draws.

        Drawn from the genome (each family, width, L and option reached evenly) rather than by
        uniform genes, and checked like bred children, so the warm-up spends no trial on a
        duplicate or on a network the objective would refuse as over budget.
        """
        fallback: dict[str, Any] | None = None
        child: dict[str, Any] = {}
        for attempt in range(1, self.max_tries + 1):
            child = self.genome.random_params(self._rng)
            if self._acceptable(child, tried):
                return child, {"parents": [], "stages": [], "ops": ["random"], "tries": attempt, "reason": reason}
            if fallback is None and self._acceptable(child, set()):
                fallback = child  # within budget, though already tried
        log.debug("no new network within budget in %d random draws (%s)", self.max_tries, reason)
        return fallback or child, {"parents": [], "stages": [], "ops": ["random"], "tries": self.max_tries,
                                   "reason": reason + "; no new network within budget found"}
