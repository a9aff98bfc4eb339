"""The samplers a search can use, by name (one place that turns ``--sampler`` into an Optuna sampler).

Both backends use the object made here: the Optuna backend directly, the Ray backend through
Ray Tune's ``OptunaSearch``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SAMPLERS", "make_sampler"]

SAMPLERS = ("nsga2", "tpe", "nsga3", "random", "gp")


def make_sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=16)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
