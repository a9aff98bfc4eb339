"""The sampler's view of a study: which trials are parents, with what objective vectors.

COMPLETE trials count by their values; trials stopped early by successive halving count by their rung
result (the last accuracy of their curve, their exact params and MACs); over-budget, no-slot and failed
trials are not parents. Also the architectures a study has already tried, so no child repeats one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from igcnas.nas.objectives import ACCURACY, objectives_for
from igcnas.nas.records import StudyKey, TrialKey, TrialStatus
from igcnas.search_space.genome import Genome

__all__ = ["Member", "has_genes", "tried_architectures", "finished_trials", "members_of", "rung_values"]

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


def tried_architectures(genome: Genome, trials: Sequence[FrozenTrial], current: int) -> set[str]:
    """Architectures the study has tried, runs or has queued (any state), by arch_id."""
    out: set[str] = set()
    for t in trials:
        if t.number == current:
            continue
        recorded = t.user_attrs.get(TrialKey.ARCH_ID)
        if recorded:
            out.add(recorded)
            continue
        params = t.params if has_genes(genome, t.params) else t.system_attrs.get("fixed_params")
        if has_genes(genome, params):
            try:
                out.add(genome.arch_id(genome.locate(params)))
            except ValueError:
                continue
    return out


def finished_trials(genome: Genome, study: optuna.Study, trials: Sequence[FrozenTrial]
                    ) -> list[tuple[FrozenTrial, tuple[float, ...]]]:
    """Trials usable as parents, oldest first, with objective vectors in minimisation form."""
    directions = study.directions
    signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]
    objectives: Sequence[str] | None = None
    out = []
    for t in trials:
        if not has_genes(genome, t.params):
            continue
        if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) == len(directions):
            values: Sequence[float] | None = t.values
        elif t.state == TrialState.PRUNED and t.user_attrs.get(TrialKey.STATUS) == TrialStatus.STOPPED_EARLY:
            if objectives is None:
                objectives = (study.metric_names or study.user_attrs.get(StudyKey.OBJECTIVES)
                              or _DEFAULT_OBJECTIVES)
            values = rung_values(t, objectives[:len(directions)])
        else:
            continue  # running, failed, over budget, no slot
        if values is None or len(values) != len(directions) or not all(math.isfinite(v) for v in values):
            continue
        out.append((t, tuple(s * float(v) for s, v in zip(signs, values))))
    out.sort(key=lambda item: item[0].number)
    return out


def members_of(genome: Genome, finished: Sequence[tuple[FrozenTrial, tuple[float, ...]]]) -> list[Member]:
    """The window's trials as parents: canonical genes (what each parent expressed) and violation."""
    out = []
    for t, values in finished:
        try:
            params = genome.canonical(t.params)
        except ValueError:
            continue  # genes from another space (a changed spec): not breedable here
        violation = sum(max(0.0, float(v)) for v in t.constraints.values())
        out.append(Member(t.number, params, values, violation))
    return out


def rung_values(t: FrozenTrial, objectives: Sequence[str]) -> list[float] | None:
    """A stopped-early trial's result at its last rung, in the study's objective order: the accuracy
    is the last of its per-epoch curve (the rung where it stopped), the costs its recorded ones."""
    curve = t.user_attrs.get(TrialKey.CURVE) or []
    out = []
    for name in objectives:
        if name == ACCURACY.name:
            value = curve[-1] if curve else None
        else:
            value = t.user_attrs.get(name)  # params, macs, latency_ms: recorded under the same names
        if value is None:
            return None
        out.append(float(value))
    return out
