"""Budget constraints in both of Optuna's forms: per key (what igcnas reads) and the list
optuna-dashboard reads, whose order has one home (``budget.CONSTRAINT_NAMES``)."""

import json
import warnings

import optuna
import pytest

from igcnas.nas.optuna_adapter import CONSTRAINTS_KEY
from igcnas.nas.budget import (CONSTRAINT_NAMES, Budget, named_constraints,
                               record_constraints)
from igcnas.nas.pareto import trials_frame

optuna.logging.set_verbosity(optuna.logging.WARNING)


def new_trial() -> tuple[optuna.Study, optuna.Trial]:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    return study, study.ask()


def test_violations_and_as_dict_follow_the_one_order():
    budget = Budget(max_params=1000, max_macs=2e4, max_latency_ms=2.0)
    assert tuple(budget.violations(params=1500, macs=1e4, latency_ms=1.0, measured_latency_ms=3.0)) \
        == CONSTRAINT_NAMES
    assert tuple(budget.as_dict()) == CONSTRAINT_NAMES[:3]  # the bounds: measured latency has the same bound
    # The latency constraints come last and are the only ones that can be missing (not known before training,
    # or not measured): a shorter list keeps the positions of the ones before.
    assert tuple(budget.violations(params=1500, macs=1e4, latency_ms=1.0)) == CONSTRAINT_NAMES[:3]
    assert budget.violations(params=1, macs=1, latency_ms=1.0, measured_latency_ms=3.0)[
        "max_latency_ms_measured"] == pytest.approx(0.5)
    assert tuple(budget.violations(params=1500, macs=1e4)) == CONSTRAINT_NAMES[:2]
    assert budget.violations(params=1500, macs=1e4) == {"max_params": 0.5, "max_macs": -0.5}
    assert Budget(max_macs=2e4).violations(params=1, macs=3e4) == {"max_macs": 0.5}


def test_list_is_in_the_one_order_and_complete_after_both_steps():
    study, trial = new_trial()
    # Given out of order, as a dict may be: the list still follows CONSTRAINT_NAMES.
    record_constraints(trial, {"max_macs": -0.5, "max_params": 0.25})
    system = study._storage.get_trial_system_attrs(trial._trial_id)
    assert system[CONSTRAINTS_KEY] == [0.25, -0.5]
    # The latency constraint once measured; the keys already recorded keep their value, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record_constraints(trial, {"max_params": 9.0, "max_macs": 9.0, "max_latency_ms": 0.1})
    study.tell(trial, [0.5, 1.0, 1.0])
    frozen = study.trials[-1]
    assert frozen.system_attrs[CONSTRAINTS_KEY] == [0.25, -0.5, 0.1]
    # Per key, as before: named reads are unchanged; Optuna's merged view also has the positional copies.
    assert {k: frozen.constraints[k] for k in CONSTRAINT_NAMES[:3]} == {"max_params": 0.25, "max_macs": -0.5,
                                                                    "max_latency_ms": 0.1}
    assert named_constraints(frozen.constraints) == {"max_params": 0.25, "max_macs": -0.5, "max_latency_ms": 0.1}
    assert frozen.constraints["0"] == 0.25 and frozen.constraints["2"] == 0.1


def test_no_budget_writes_no_list_and_unknown_names_are_refused():
    study, trial = new_trial()
    record_constraints(trial, {})
    assert CONSTRAINTS_KEY not in study._storage.get_trial_system_attrs(trial._trial_id)
    with pytest.raises(ValueError, match="unknown constraint"):
        record_constraints(trial, {"max_energy": 1.0})


def test_named_constraints_drops_positional_copies_but_keeps_a_list_alone():
    assert named_constraints({"0": 0.5, "max_params": 0.5}) == {"max_params": 0.5}
    assert named_constraints({"0": 0.5, "1": -1.0}) == {"0": 0.5, "1": -1.0}  # another tool's list form only
    assert named_constraints({}) == {}


def test_trials_frame_shows_each_constraint_once():
    study, trial = new_trial()
    record_constraints(trial, {"max_params": 0.5, "max_macs": -0.25})
    study.tell(trial, [0.5, 1.0, 1.0])
    row = trials_frame(study).iloc[0]
    assert json.loads(row["constraints"]) == {"max_params": 0.5, "max_macs": -0.25}
    assert not row["feasible"]


def test_parents_violation_counts_each_constraint_once():
    import random

    from igcnas.nas.population import members_of
    from igcnas.nas.gene_suggestions import gene_distributions
    from igcnas.search_space.genome import Genome
    from igcnas.search_space.spec import SearchSpec

    genome = Genome(SearchSpec(widths=(8, 16), blocks=(1,), input_size=8, in_channels=1))
    study, live = new_trial()
    record_constraints(live, {"max_params": 0.5, "max_macs": 0.25})  # both forms, as a search records them
    trial = optuna.trial.create_trial(params=genome.random_params(random.Random(0)),
                                      distributions=gene_distributions(genome), values=[0.5, 1.0, 1.0],
                                      system_attrs=study._storage.get_trial_system_attrs(live._trial_id))
    assert len(trial.constraints) == 4  # Optuna's merged view: two names and two positions
    (member,) = members_of(genome, [(trial, (-0.5, 1.0, 1.0))])
    assert member.violation == 0.75
