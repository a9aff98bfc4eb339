"""The search space as Optuna sees it: the genome's fixed genes, suggested in every trial.

Every trial suggests the same genes with the same distributions (``family``,
``width``, ``blocks``, then ``s{i}.L`` and ``s{i}.pos`` per stage, and ``s{i}.sk``
and ``s{i}.cr`` in a structured space; see :mod:`igcnas.search_space.genome`),
and the genome decodes them, repairing
where needed, into a valid network whose interleaved blocks are
complementary. Fixed genes are what Optuna's multivariate samplers need:
NSGA-II's ``IntersectionSearchSpace`` and TPE's ``multivariate=True`` only
model parameters that every trial has, so the old per-family, per-width
names (``igcv2.s1.K@C64.L3``) left widths, L and K to random draws.

Also here: the seed trials to enqueue.
"""

from __future__ import annotations

from typing import Any

from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.genes import GeneSpec
from igcnas.search_space.genome import Genome, genome_for
from igcnas.search_space.seeds import seed_configs, zoo_seed_configs
from igcnas.search_space.spec import SearchSpec

__all__ = ["suggest_config", "seed_trial_params", "gene_distributions"]


def _genome(genome: Genome | SearchSpec) -> Genome:
    """A genome, or the shared one of a spec: callers that still hold a SearchSpec keep working."""
    if isinstance(genome, Genome):
        return genome
    if isinstance(genome, SearchSpec):
        return genome_for(genome)
    raise TypeError(f"genome must be a Genome (or a SearchSpec), got {type(genome).__name__}")


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
            continue
        low, high = gene.low, gene.high
        if gene.kind == "int":
            params[gene.name] = trial.suggest_int(gene.name, int(low), int(high))
        else:
            params[gene.name] = trial.suggest_float(gene.name, float(low), float(high))
    return genome.decode(params)


def seed_trial_params(genome: Genome | SearchSpec) -> list[dict[str, Any]]:
    """Trial parameters (genes) of the seed networks to enqueue: the balance-condition networks and
    the zoo networks (:func:`~igcnas.search_space.seeds.seed_configs`,
    :func:`~igcnas.search_space.seeds.zoo_seed_configs`), each once."""
    genome = _genome(genome)
    out: list[dict[str, Any]] = []
    for config in seed_configs(genome.spec) + zoo_seed_configs(genome.spec):
        params = genome.encode(config)
        if params not in out:
            out.append(params)
    return out
