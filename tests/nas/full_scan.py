"""The search's readers of a study written the obvious way: every trial read at every call.

The product reads a study incrementally (``population.TrialFeed``, ``StudyView``, ``RungIndex``,
``optuna_backend._TrialCounts``) so that a call does not cost in proportion to the study; these are the
oracles the tests check those readers against, passed in through the same seams (the sampler's ``view``,
the objective's ``rung_check``).
"""

from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial

from igcnas.nas.early_stopping import rung_peers, should_promote
from igcnas.nas.optuna_adapter import storage_of
from igcnas.nas.population import ParentValues, arch_of
from igcnas.search_space.genome import Genome


def tried_architectures(genome: Genome, trials: Sequence[FrozenTrial], current: int) -> set[str]:
    """Architectures the study has tried, runs or has queued (any state), by arch_id."""
    return {arch for t in trials if t.number != current and (arch := arch_of(genome, t)) is not None}


def finished_trials(genome: Genome, study: optuna.Study, trials: Sequence[FrozenTrial]
                    ) -> list[tuple[FrozenTrial, tuple[float, ...]]]:
    """Trials usable as parents, oldest first, with objective vectors in minimisation form."""
    value_of = ParentValues(genome, study)
    out = [(t, values) for t in trials if (values := value_of(t)) is not None]
    return sorted(out, key=lambda item: item[0].number)


class FullScanView:
    """``population.StudyView``'s interface, every answer computed from all of the study's trials."""

    def __init__(self, genome: Genome, study: optuna.Study) -> None:
        self.genome, self.study, self.storage = genome, study, storage_of(study)
        self._trials: list[FrozenTrial] = []
        self._parents: list[tuple[FrozenTrial, tuple[float, ...]]] = []

    def refresh(self) -> None:
        self._trials = self.study.get_trials(deepcopy=False)
        self._parents = finished_trials(self.genome, self.study, self._trials)

    def tried(self, current: int) -> set[str]:
        return tried_architectures(self.genome, self._trials, current)

    @property
    def parent_count(self) -> int:
        return len(self._parents)

    def parents(self, last: int) -> list[tuple[FrozenTrial, tuple[float, ...]]]:
        return self._parents[-last:]


def full_scan_rung_check(fidelity: str, eta: int) -> Any:
    """``optuna_backend.RungCheck`` from all of the study's trials at every check."""

    def check(trial: Any, epoch: int, own: Any) -> tuple[bool, int, int, int]:
        peers = rung_peers(trial.study.get_trials(deepcopy=False), fidelity, epoch, exclude=trial.number)
        return (*should_promote(own, peers, eta), len(peers) + 1)

    return check


def taken_before(study: optuna.Study, number: int) -> int:
    """Trials numbered below ``number`` that are COMPLETE or RUNNING (the ``--total-trials`` slot check)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if t.number < number)
