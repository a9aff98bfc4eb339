"""The samplers a search can use, by name (one place that turns ``--sampler`` into an Optuna sampler).

Both backends use the object made here: the Optuna backend directly, the Ray backend through
Ray Tune's ``OptunaSearch`` (which pickles it). ``evolution``, the default, is the steady-state
multi-objective evolution of :mod:`igcnas.nas.evolution` over the genome's fixed genes; it needs
the search's SearchSpec (and uses the budget and the trial count). The plain Optuna samplers stay
for comparison: ``nsga2`` is NSGA-II as Optuna ships it (now evolving every gene, since the genes
are the same in every trial), and TPE models the genes jointly (``multivariate=True, group=True``)
rather than one by one.
"""

from __future__ import annotations

import warnings
from typing import Any

from igcnas.errors import BadInput

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "make_sampler"]

SAMPLERS = ("evolution", "nsga2", "tpe", "nsga3", "random", "gp")
DEFAULT_SAMPLER = SAMPLERS[0]


def make_sampler(name: str, seed: int, *, spec: Any = None, budget: Any = None, n_trials: int | None = None) -> Any:
    """The sampler called ``name``, seeded with ``seed``.

    ``spec`` (a SearchSpec) is required by ``evolution``; ``budget`` (a :class:`~igcnas.nas.budget.Budget`)
    keeps its children within the closed-form params/MACs bounds and ``n_trials`` sizes its population.
    The other samplers ignore them.
    """
    import optuna

    if name == "evolution":
        from igcnas.nas.evolution import EvolutionarySampler
        from igcnas.search_space.genome import genome_for

        if spec is None:
            raise BadInput("the evolution sampler needs the search space: make_sampler('evolution', seed, spec=...)")
        return EvolutionarySampler(genome=genome_for(spec), seed=seed, n_trials_hint=n_trials,
                                   budget_params=getattr(budget, "max_params", None),
                                   budget_macs=getattr(budget, "max_macs", None))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=16)
    if name == "tpe":
        with warnings.catch_warnings():
            # multivariate and group are experimental in Optuna; chosen on purpose, not news on every run.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise BadInput(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
