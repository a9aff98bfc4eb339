"""The search space as Optuna sees it: the genome's fixed genes, suggested in every trial.

Every trial suggests the same genes with the same distributions (``family``,
``width``, ``blocks``, then ``s{i}.L`` and ``s{i}.pos`` per stage; see
:mod:`igcnas.search_space.genome`), and the genome decodes them, repairing
where needed, into a valid network whose interleaved blocks are
complementary. Fixed genes are what Optuna's multivariate samplers need:
NSGA-II's ``IntersectionSearchSpace`` and TPE's ``multivariate=True`` only
model parameters that every trial has, so the old per-family, per-width
names (``igcv2.s1.K@C64.L3``) left widths, L and K to random draws.

Also here: budgets (with human units), and the seed trials to enqueue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.genome import GeneSpec, Genome, genome_for, seed_configs, zoo_seed_configs
from igcnas.search_space.spec import SearchSpec, space_bounds

__all__ = ["Budget", "parse_count", "suggest_config", "seed_trial_params", "gene_distributions", "genome_for",
           "space_bounds"]


def parse_count(text: str | int | float | None, what: str) -> float | None:
    """Parse ``250k``, ``1.5M``, ``30M``, ``2G`` or a plain number; must be positive."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
        if not match:
            raise ValueError(f"{what} must be a positive number with an optional k/M/G suffix "
                             f"(e.g. 250k, 1.5M), got {text!r}")
        value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]
    if not value > 0:
        raise ValueError(f"{what} must be > 0, got {text!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Upper bounds; ``None`` means unbounded. MACs are multiply-accumulates (FLOPs = 2 x MACs)."""

    max_params: float | None = None
    max_macs: float | None = None
    max_latency_ms: float | None = None

    def violations(self, *, params: float, macs: float, latency_ms: float | None = None) -> dict[str, float]:
        """Constraint values in Optuna's convention (<= 0 feasible), normalised by the bound."""
        out = {}
        if self.max_params is not None:
            out["max_params"] = params / self.max_params - 1.0
        if self.max_macs is not None:
            out["max_macs"] = macs / self.max_macs - 1.0
        if self.max_latency_ms is not None and latency_ms is not None:
            out["max_latency_ms"] = latency_ms / self.max_latency_ms - 1.0
        return out

    def as_dict(self) -> dict[str, float | None]:
        return {"max_params": self.max_params, "max_macs": self.max_macs, "max_latency_ms": self.max_latency_ms}


def _genome(genome: Genome | SearchSpec) -> Genome:
    """A genome, or the shared one of a spec: callers that still hold a SearchSpec keep working."""
    if isinstance(genome, Genome):
        return genome
    if isinstance(genome, SearchSpec):
        return genome_for(genome)
    raise ValueError(f"genome must be a Genome (or a SearchSpec), got {type(genome).__name__}")


def gene_distribution(gene: GeneSpec) -> Any:
    """The Optuna distribution of one gene."""
    import optuna

    if gene.kind == "categorical":
        return optuna.distributions.CategoricalDistribution(gene.choices)
    if gene.kind == "int":
        return optuna.distributions.IntDistribution(int(gene.low), int(gene.high))  # type: ignore[arg-type]
    return optuna.distributions.FloatDistribution(float(gene.low), float(gene.high))  # type: ignore[arg-type]


def gene_distributions(genome: Genome | SearchSpec) -> dict[str, Any]:
    """Every gene's Optuna distribution, in gene order (for ``create_trial`` and samplers)."""
    return {gene.name: gene_distribution(gene) for gene in _genome(genome).genes}


def suggest_config(trial: Any, genome: Genome | SearchSpec) -> NetworkConfig:
    """Define-by-run over fixed genes: suggest every gene, then decode (and repair) into a valid network.

    Every gene is suggested in every trial, even those a family ignores (dense has no stage
    choices), so that all trials share one search space and samplers see it whole. A SearchSpec
    is accepted for callers not yet passing a genome (its shared :func:`genome_for` is used).
    """
    genome = _genome(genome)
    params: dict[str, Any] = {}
    for gene in genome.genes:
        if gene.kind == "categorical":
            params[gene.name] = trial.suggest_categorical(gene.name, gene.choices)
        elif gene.kind == "int":
            params[gene.name] = trial.suggest_int(gene.name, int(gene.low), int(gene.high))  # type: ignore[arg-type]
        else:
            params[gene.name] = trial.suggest_float(gene.name, float(gene.low), float(gene.high))  # type: ignore[arg-type]
    return genome.decode(params)


def seed_trial_params(genome: Genome | SearchSpec) -> list[dict[str, Any]]:
    """Trial parameters (genes) of the seed networks to enqueue: the balance-condition networks and
    the zoo networks (:func:`~igcnas.search_space.genome.seed_configs`,
    :func:`~igcnas.search_space.genome.zoo_seed_configs`), each once."""
    genome = _genome(genome)
    out: list[dict[str, Any]] = []
    for config in seed_configs(genome.spec) + zoo_seed_configs(genome.spec):
        params = genome.encode(config)
        if params not in out:
            out.append(params)
    return out
