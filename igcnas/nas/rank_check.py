"""Does short training rank networks as long training does? Rank agreement between two fidelities.

Samples configurations uniformly from the valid space, trains each from the
same initial weights at the search fidelity and at a longer one, and reports
Kendall's tau between the two rankings by validation accuracy (scipy's
implementation). A tau near 1 means the short runs order architectures as the
long runs would; near 0, the search's accuracy objective is mostly noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable
from igcnas.errors import BadInput

__all__ = ["RankCheckResult", "rank_check"]

log = logging.getLogger(__name__)


@dataclass
class RankCheckResult:
    short_epochs: int
    long_epochs: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    tau: float = float("nan")
    p_value: float = float("nan")


def rank_check(*, dataset: str = "digits", data_dir: str | None = None, n_configs: int = 10, short_epochs: int = 2,
               long_epochs: int = 8, seed: int = 0, families: tuple[str, ...] | None = None,
               max_batches_per_epoch: int | None = None, device: str = "auto",
               on_row: Callable[[dict[str, Any]], None] | None = None) -> RankCheckResult:
    import optuna
    from scipy.stats import kendalltau

    from igcnas.evaluators.datasets import load_dataset
    from igcnas.evaluators.train import TrainSettings, train_model
    from igcnas.models import build_model
    from igcnas.search_space.describe import describe_structure
    from igcnas.nas.gene_suggestions import suggest_config
    from igcnas.search_space.genome import genome_for
    from igcnas.search_space.spec import SearchSpec
    from igcnas.search_space.costs import closed_form_costs

    if n_configs < 3:
        raise BadInput(f"n-configs must be >= 3 to rank anything, got {n_configs}")
    if not 1 <= short_epochs < long_epochs:
        raise BadInput(f"need 1 <= short epochs < long epochs, got {short_epochs} and {long_epochs}")
    data = load_dataset(dataset, data_dir=data_dir, seed=seed)
    spec = SearchSpec.for_data(in_channels=data.in_channels, input_size=data.input_size,
                               num_classes=data.num_classes, families=families)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # only a sampler here; its study is not news
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    result = RankCheckResult(short_epochs, long_epochs)
    for i in range(n_configs):
        config = suggest_config(study.ask(), genome_for(spec))
        accuracies = []
        for epochs in (short_epochs, long_epochs):
            model = build_model(config, seed=seed + i)
            settings = TrainSettings(epochs=epochs, seed=seed + i, max_batches_per_epoch=max_batches_per_epoch,
                                     device=device)
            accuracies.append(train_model(model, data, settings).val_accuracy)
        row = {"structure": describe_structure(config), "params": closed_form_costs(config).params,
               "short": accuracies[0], "long": accuracies[1]}
        result.rows.append(row)
        if on_row is not None:
            on_row(row)
    tau = kendalltau([r["short"] for r in result.rows], [r["long"] for r in result.rows])
    result.tau, result.p_value = float(tau.statistic), float(tau.pvalue)
    return result
