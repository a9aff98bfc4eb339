"""SQL statements per trial of Optuna's own trial loop on PostgreSQL: the floor under a search's figure.

``study.optimize`` on the storage a search opens (heartbeat on, as ``igc-nas search`` runs), with a
random sampler and an objective that (a) does nothing, (b) only suggests the search's genes (the digits
space's genome) and returns constants. Whatever a search records, reads or checks comes on top of (b);
``bench/scale.py`` measures the search itself (its ``SQL/tr`` column).

    python bench/optuna_floor.py [--trials 10] [--json floor.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_URL = os.environ.get("IGCNAS_TEST_POSTGRES", "postgresql+psycopg2://igcnas:igcnas@127.0.0.1:5432/igcnas")


def statements_per_trial(suggest_genes: bool, trials: int) -> float:
    import optuna
    from sqlalchemy import event

    from igcnas.nas.gene_suggestions import gene_distributions
    from igcnas.nas.study import open_storage
    from igcnas.search_space.genome import genome_for
    from igcnas.search_space.spec import SearchSpec

    distributions = gene_distributions(genome_for(SearchSpec.for_data(in_channels=1, input_size=8, num_classes=10)))
    storage = open_storage(PG_URL, heartbeat_interval=20, grace_period=40)
    name = f"floor-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        if suggest_genes:
            for gene, distribution in distributions.items():
                if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                    trial.suggest_categorical(gene, distribution.choices)
                elif isinstance(distribution, optuna.distributions.IntDistribution):
                    trial.suggest_int(gene, distribution.low, distribution.high)
                else:
                    trial.suggest_float(gene, distribution.low, distribution.high)
        return 0.5, 1.0, 1.0

    try:
        study.optimize(objective, n_trials=2)  # warm-up: connections, caches
        count = [0]
        event.listen(storage.engine, "before_cursor_execute", lambda *args: count.__setitem__(0, count[0] + 1))
        study.optimize(objective, n_trials=trials)
        return count[0] / trials
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def main() -> int:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials counted per objective (default 10)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = {"postgres": PG_URL.rsplit("@", 1)[-1], "trials": args.trials,
           "nothing": statements_per_trial(False, args.trials), "genes_only": statements_per_trial(True, args.trials)}
    print(f"Optuna's trial loop on PostgreSQL, SQL statements per trial: {out['nothing']:.1f} with an objective "
          f"that does nothing, {out['genes_only']:.1f} with one that only suggests the genes")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
