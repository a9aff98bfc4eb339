"""Shared fixtures: studies made directly through Optuna's API (real storage, no training)."""

from __future__ import annotations

import os

# The one timer waits up to seconds per figure for the machine to run at full speed; tables and searches in
# tests need figures, not good ones (the timer's own tests set their limits). Set before igcnas is imported:
# child processes (the CLI, benchmarks) inherit it.
os.environ.setdefault("IGCNAS_TIMER_MAX_SECONDS", "0.3")
# Training-path and inference decisions stay in each process's memory: tests must not read what earlier runs
# decided on this machine, nor leave decisions in the user's cache (tests of the file pass their own).
os.environ.setdefault("IGCNAS_TRAINING_PATH_CACHE", "0")

import random  # noqa: E402
from pathlib import Path

import optuna
import pytest

from igcnas.nas.objectives import OBJECTIVES
from igcnas.nas.study import open_storage
from igcnas.nas.records import RECORD_ATTR, StudyKey, TrialKey, TrialStatus, check_record
from igcnas.search_space.describe import describe_structure
from igcnas.search_space.config_io import config_to_dict
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.families import FAMILIES
from igcnas.search_space.design_space import DesignSpace
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.spec import SearchSpec

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def make_study(url: str, name: str, n: int, *, seed: int = 0, infeasible_every: int = 0) -> optuna.Study:
    """A study of ``n`` completed trials over real configurations, with made-up accuracies and curves."""
    rng = random.Random(seed)
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=name, storage=storage, directions=[o.direction for o in OBJECTIVES])
    space = DesignSpace(SearchSpec(families=tuple(f for f in FAMILIES if f != "igcv3"), widths=(8, 16, 24), blocks=(1,),
                                    input_size=8, in_channels=1))
    study.set_user_attr(StudyKey.REFERENCE_POINT, {"params": 2e5, "macs": 5e6, "latency_ms": None})
    study.set_user_attr(StudyKey.DATASET, "digits")
    study.set_user_attr(StudyKey.SEARCH_SPEC, {"in_channels": 1, "input_size": 8, "num_classes": 10})
    trials = []
    for i, config in enumerate(space.sample(n, seed=seed)):
        costs = closed_form_costs(config)
        accuracy = round(min(0.999, 0.55 + 0.1 * (costs.params ** 0.2) / 3 + rng.uniform(-0.08, 0.08)), 4)
        curve = sorted(round(accuracy - rng.uniform(0, 0.2), 4) for _ in range(3)) + [accuracy]
        system_attrs = {}
        if infeasible_every and i % infeasible_every == 0:
            system_attrs["constraints:max_params"] = 0.5
        trials.append(optuna.trial.create_trial(
            values=[accuracy, float(costs.params), float(costs.macs)],
            user_attrs={RECORD_ATTR: check_record({
                TrialKey.CONFIG: config_to_dict(config), TrialKey.ARCH_ID: arch_id(config),
                TrialKey.FAMILY: config.family, TrialKey.WIDTH: config.stages[0].width,
                TrialKey.STRUCTURE: describe_structure(config), TrialKey.PARAMS: costs.params,
                TrialKey.MACS: costs.macs, TrialKey.CURVE: curve, TrialKey.STATUS: TrialStatus.COMPLETE})},
            system_attrs=system_attrs,
        ))
    study.add_trials(trials)
    return study


def record_evaluation(study: optuna.Study, **changes) -> dict:
    """Give a synthetic study the evaluation record a search writes (digits, tiny training), as refine reads it."""
    record = {"dataset": "digits", "data_dir": None, "split_seed": 0, "val_fraction": 0.2, "epochs": 4,
              "memory_cap_mb": None, "cache_dir": None, "batch_size": 64, "lr": 0.05, "max_batches_per_epoch": 2,
              "structured_mode": "regularised", "structure_lambda": 100.0, **changes}
    study.set_user_attr(StudyKey.EVALUATION, record)
    return record


@pytest.fixture
def synthetic_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    return url, make_study(url, "dash", 60, seed=1, infeasible_every=7)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# Fixtures that start a Ray cluster, a browser or a dashboard server: every test that uses one is slow, marked
# or not, so that `pytest -m "not slow"` (the inner loop) never waits for them. Tests slow for other reasons
# (a second or more on the 2-core machine) carry @pytest.mark.slow themselves.
SLOW_FIXTURES = frozenset({"ray_cluster", "loopback_env", "browser", "live_server", "dashboard"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def plain_accuracy(model, x, y, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` in eval mode on tensors as given: an oracle independent of the product's
    own evaluation (evaluators.train.evaluate_split), which tests compare it with."""
    import torch

    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += int((model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)
