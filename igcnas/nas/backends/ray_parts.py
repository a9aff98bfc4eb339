"""What the Ray backend ships to the cluster: the define-by-run space and the trial function.

Kept apart from ``ray_backend`` so that Tune pickles small module-level objects. The trial
function imports ray inside (this module itself does not), and trains exactly as the Optuna
backend does: the same data split, training settings, per-trial limits and evaluation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from igcnas.nas.records import TrialKey, TrialStatus

__all__ = ["DefineByRun", "trainable"]

_DATA_CACHE: dict[tuple[Any, ...], Any] = {}


class DefineByRun:
    """The define-by-run space for OptunaSearch (a class so that Tune can pickle the searcher)."""

    def __init__(self, genome: Any, budget: Any, run: dict[str, Any]) -> None:
        self.genome, self.budget, self.run = genome, budget, run

    def __call__(self, trial: Any) -> dict[str, Any]:
        from igcnas.nas.objective import suggest_and_record
        from igcnas.search_space.config import config_to_dict

        trial.set_user_attr(TrialKey.BACKEND, "ray")  # first: Optuna workers must not take it for an orphan
        pre = suggest_and_record(trial, self.genome, self.budget)
        trial.set_user_attr(TrialKey.FIDELITY, self.run["fidelity"])
        return {"igcnas_config": config_to_dict(pre.config), "igcnas_status": pre.status,
                "igcnas_number": trial.number, "igcnas_run": self.run}


def trainable(config: dict[str, Any]) -> None:
    """A Ray Tune function trainable: one configuration, trained and reported."""
    import ray
    import torch
    from ray import tune

    from igcnas.evaluators.data import load_dataset
    from igcnas.evaluators.train import TrainSettings, TrialDiverged, TrialLimitExceeded
    from igcnas.nas.objective import evaluate_config
    from igcnas.nas.objectives import objectives_for
    from igcnas.nas.budget import Budget
    from igcnas.search_space.config import config_from_dict
    from igcnas.search_space.costs import closed_form_costs

    run = config["igcnas_run"]
    network = config_from_dict(config["igcnas_config"])
    if config.get("igcnas_status") == TrialStatus.OVER_BUDGET:
        tune.report({"igcnas_status": TrialStatus.OVER_BUDGET})  # no objective values: pruned, never trained
        return
    torch.set_num_threads(max(1, int(run["cpus_per_trial"])))
    key = (run["dataset"], run["data_dir"], run["split_seed"], run["val_fraction"])
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(run["dataset"], data_dir=run["data_dir"], seed=run["split_seed"],
                                        val_fraction=run["val_fraction"], memory_cap_mb=run.get("memory_cap_mb"),
                                        cache_dir=run.get("cache_dir"))
    data = _DATA_CACHE[key]
    seed = int(run["split_seed"]) + int(config["igcnas_number"])
    settings = TrainSettings(**{**run["train"], "seed": seed})
    costs = closed_form_costs(network)
    curve: list[float] = []

    def on_epoch(epoch: int, accuracy: float) -> None:
        curve.append(accuracy)
        if epoch < settings.epochs:
            # The exact costs ride along so that the scheduler can rank trials at a rung on all objectives.
            tune.report({"epoch": epoch, "val_accuracy_epoch": accuracy, "igcnas_params": costs.params,
                         "igcnas_macs": costs.macs, "igcnas_curve": json.dumps(curve)})

    node = f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:12]}"
    try:
        evaluation = evaluate_config(network, data, train_settings=settings, budget=Budget(**run["budget"]),
                                     measure_latency=run["measure_latency"], model_seed=seed, on_epoch=on_epoch)
    except (TrialDiverged, TrialLimitExceeded) as exc:
        # As on the Optuna backend: the trial fails with its reason and the search goes on.
        tune.report({"igcnas_status": TrialStatus.FAILED, "igcnas_error": f"{type(exc).__name__}: {exc}",
                     "igcnas_node": node, "igcnas_attrs": json.dumps({TrialKey.CURVE: curve})})
        return
    # Nested values travel JSON-encoded so that Tune's result loggers see flat scalars only.
    result: dict[str, Any] = {"igcnas_status": evaluation.status, "igcnas_attrs": json.dumps(evaluation.attrs),
                              "igcnas_constraints": json.dumps(evaluation.constraints), "epoch": len(curve),
                              "igcnas_node": node}  # which machine trained it: finds slow or faulty nodes
    if evaluation.status == TrialStatus.COMPLETE:
        objectives = objectives_for(latency=run["latency_objective"])
        result.update(zip([o.name for o in objectives], evaluation.objective_values(objectives)))
        if run["artifacts"]:
            pending = Path(run["artifacts"]) / "pending"
            pending.mkdir(parents=True, exist_ok=True)
            weights = pending / f"trial_{config['igcnas_number']}_{os.getpid()}.pt"
            torch.save(evaluation.model.state_dict(), weights)
            result["igcnas_weights_file"] = str(weights)
    tune.report(result)
