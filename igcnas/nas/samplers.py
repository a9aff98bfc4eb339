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

import threading
import warnings
from typing import Any

from igcnas.errors import BadInput

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "make_sampler"]

SAMPLERS = ("evolution", "nsga2", "tpe", "nsga3", "random", "gp")
DEFAULT_SAMPLER = SAMPLERS[0]


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


class _FreshLock:
    """Stands in for a lock while pickled; a new, released lock of the same kind replaces it on loading."""

    def __init__(self, reentrant: bool) -> None:
        self.reentrant = reentrant

    def make(self) -> Any:
        return threading.RLock() if self.reentrant else threading.Lock()


class _PicklableLocks:
    """Mixin for Optuna samplers that hold a thread lock (NSGA-II/III since Optuna 5.1).

    Ray Tune pickles the searcher, and with it the sampler, and a lock does not pickle ("cannot pickle
    '_thread.lock' object"). A lock guards only this process's threads, so the copy gets a fresh one; the
    locks are found by type rather than by Optuna's private attribute names.
    """

    def __getstate__(self) -> dict[str, Any]:
        return {key: _FreshLock(isinstance(value, _LOCK_TYPES[1])) if isinstance(value, _LOCK_TYPES) else value
                for key, value in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({key: value.make() if isinstance(value, _FreshLock) else value
                              for key, value in state.items()})


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
        return _picklable_class("NSGAIISampler")(seed=seed, population_size=16)
    if name == "nsga3":
        return _picklable_class("NSGAIIISampler")(seed=seed, population_size=16)
    if name == "tpe":
        with warnings.catch_warnings():
            # multivariate and group are experimental in Optuna; chosen on purpose, not news on every run.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return _picklable_class("GPSampler")(seed=seed)
    raise BadInput(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


# The Optuna samplers made through _picklable_class (those that hold a lock, or may in a later release).
_LOCKING_SAMPLERS = ("NSGAIISampler", "NSGAIIISampler", "GPSampler")
_PICKLABLE: dict[str, type] = {}


def _picklable_class(name: str) -> type:
    """``optuna.samplers.<name>`` with :class:`_PicklableLocks` mixed in (same name, same behaviour), made
    once per process and on first use (this module does not import Optuna when it is imported).

    Pickle finds a class by its module-level name, so each one is also bound in this module.
    """
    if name not in _PICKLABLE:
        import optuna

        cls = type(name, (_PicklableLocks, getattr(optuna.samplers, name)), {"__module__": __name__,
                                                                              "__qualname__": name})
        _PICKLABLE[name] = cls
        globals()[name] = cls
    return _PICKLABLE[name]


def __getattr__(name: str) -> type:
    # A fresh process unpickling a sampler looks its class up here before anything has made it.
    if name in _LOCKING_SAMPLERS:
        return _picklable_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
