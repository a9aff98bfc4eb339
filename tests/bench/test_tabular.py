"""The tabular replay (bench/tabular.py) on a tiny synthetic table: no training, well under a second per test.

The replay is what every sampler comparison rests on, so the properties checked are the ones a comparison
would silently get wrong: determinism under a seed, a clock that respects the budget, the search's
early-stopping rule applied at the rungs, a hypervolume that never goes down, and look-ups that only ever
hit networks of the table.
"""

from __future__ import annotations

import math
import random

import numpy as np
import optuna
import pytest
from igc_table import Row, read_rows, write_table
from tabular import DEFAULT_SCHEDULE, FrontTracker, HVReference, replay, table_front_hv

from igcnas.nas.early_stopping import RungSchedule
from igcnas.nas.records import TrialKey, TrialStatus, record_of
from igcnas.search_space.config_io import config_to_dict
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.design_space import DesignSpace
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.spec import SearchSpec

RUNGS_1_3 = RungSchedule(max_epochs=4, min_epochs=1, eta=3)  # the old default: rungs at epochs 1 and 3

SPEC = SearchSpec(families=("dense", "deep_roots", "igcv1"), widths=(8,), blocks=(1,), num_stages=2, max_l=4,
                  in_channels=1, input_size=8, num_classes=10)


@pytest.fixture(scope="module")
def configs():
    return list(DesignSpace(SPEC))


@pytest.fixture(scope="module")
def table(configs):
    """Fake but plausible curves: rising over 4 epochs, seeded per network; training time grows with MACs."""
    rows = {}
    for i, config in enumerate(configs):
        costs = closed_form_costs(config)
        rng = random.Random(i)
        curves = {}
        for seed in (0, 1):
            final = 0.6 + 0.35 * rng.random()
            curves[seed] = [round(final * f, 4) for f in (0.3 + 0.2 * rng.random(), 0.7, 0.9, 1.0)]
        seconds = {seed: 0.5 + costs.macs / 2e5 + 0.1 * seed for seed in (0, 1)}
        aid = arch_id(config)
        rows[aid] = Row(arch_id=aid, config=config_to_dict(config), family=config.family, width=8, blocks=1,
                        params=costs.params, macs=costs.macs, curves=curves, seconds=seconds)
    return rows


def by_index(configs):
    """A suggest function over the networks' indices: any sampler can drive it, and trials can be enqueued."""
    def suggest(trial):
        return configs[trial.suggest_int("i", 0, len(configs) - 1)]
    return suggest


def run(table, configs, *, seed=0, budget_s=20.0, schedule=DEFAULT_SCHEDULE, workers=3, enqueue=()):
    return replay(table=table, spec=SPEC, sampler=optuna.samplers.RandomSampler(seed=seed), budget_s=budget_s,
                  n_workers=workers, schedule=schedule, seed=seed, seeds_to_enqueue=list(enqueue),
                  suggest=by_index(configs))


def test_space_is_small_enough(configs):
    assert 5 <= len(configs) <= 60


def test_deterministic_under_a_seed(table, configs):
    a, b = run(table, configs, seed=3), run(table, configs, seed=3)
    assert [(t.arch_id, t.seed, t.status, t.epochs, t.end_s) for t in a.trials] == \
           [(t.arch_id, t.seed, t.status, t.epochs, t.end_s) for t in b.trials]
    assert a.hv == b.hv and a.times == b.times
    c = run(table, configs, seed=4)
    assert [t.arch_id for t in c.trials] != [t.arch_id for t in a.trials]


def test_clock_never_exceeds_budget(table, configs):
    budget = 7.5
    r = run(table, configs, budget_s=budget)
    assert r.times and max(r.times) <= budget
    assert all(t.start_s < budget for t in r.trials)
    assert all(t.end_s <= budget for t in r.trials if not math.isnan(t.end_s))
    # Never more work than the workers can do: busy time <= workers x budget.
    busy = sum(table[t.arch_id].seconds[t.seed] * t.epochs / 4 for t in r.trials)
    assert busy <= 3 * budget + 1e-9


def test_early_stopping_stops_a_dominated_trial_at_the_first_rung(table, configs):
    rows = list(table.values())
    cheap = min(rows, key=lambda r: (r.params, r.macs))
    dear = max(rows, key=lambda r: (r.params, r.macs))
    assert dear.params > cheap.params and dear.macs >= cheap.macs
    # The cheap network is also the more accurate one at epoch 1 (for both seeds): the dear one is dominated.
    rigged = dict(table)
    rigged[cheap.arch_id] = Row(**{**cheap.__dict__, "curves": {0: [0.9] * 4, 1: [0.9] * 4},
                                   "seconds": {0: 1.0, 1: 1.0}})
    rigged[dear.arch_id] = Row(**{**dear.__dict__, "curves": {0: [0.2, 0.5, 0.8, 0.95], 1: [0.2, 0.5, 0.8, 0.95]},
                                  "seconds": {0: 2.0, 1: 2.0}})
    index = {arch_id(c): i for i, c in enumerate(configs)}
    r = replay(table=rigged, spec=SPEC, sampler=optuna.samplers.RandomSampler(seed=0), budget_s=2.0, n_workers=1,
               schedule=RUNGS_1_3, seed=0,
               seeds_to_enqueue=[{"i": index[cheap.arch_id]}, {"i": index[dear.arch_id]}], suggest=by_index(configs))
    first, second = r.trials[0], r.trials[1]
    assert (first.arch_id, first.status, first.epochs) == (cheap.arch_id, TrialStatus.COMPLETE, 4)
    assert (second.arch_id, second.status, second.epochs) == (dear.arch_id, TrialStatus.STOPPED_EARLY, 1)
    assert second.end_s == pytest.approx(1.0 + 2.0 / 4)
    frozen = r.study.trials[1]
    assert frozen.state == optuna.trial.TrialState.PRUNED
    assert record_of(frozen.user_attrs)[TrialKey.STATUS] == TrialStatus.STOPPED_EARLY
    assert record_of(frozen.user_attrs)[TrialKey.CURVE] == [0.2]
    assert record_of(frozen.user_attrs)[TrialKey.STOPPED_AT_EPOCH] == 1
    # Without early stopping the same trial trains to the end.
    r2 = replay(table=rigged, spec=SPEC, sampler=optuna.samplers.RandomSampler(seed=0), budget_s=3.0, n_workers=1,
                schedule=None, seed=0, seeds_to_enqueue=[{"i": index[cheap.arch_id]}, {"i": index[dear.arch_id]}],
                suggest=by_index(configs))
    assert r2.trials[1].status == TrialStatus.COMPLETE and r2.trials[1].epochs == 4


def test_the_replay_uses_the_search_default_schedule():
    from igcnas.nas.options import SearchOptions

    assert DEFAULT_SCHEDULE == SearchOptions().rung_schedule


def test_rungs_are_applied_only_at_the_schedule(table, configs):
    later = run(table, configs, schedule=RungSchedule(max_epochs=4, min_epochs=2, eta=3), budget_s=30.0)
    assert {t.epochs for t in later.trials if t.status == TrialStatus.STOPPED_EARLY} <= {2}
    default = run(table, configs, schedule=RUNGS_1_3, budget_s=30.0)
    assert {t.epochs for t in default.trials if t.status == TrialStatus.STOPPED_EARLY} <= {1, 3}
    assert default.count(TrialStatus.STOPPED_EARLY) > 0
    none = run(table, configs, schedule=None, budget_s=30.0)
    assert none.count(TrialStatus.STOPPED_EARLY) == 0


def test_hypervolume_is_non_decreasing_and_normalised(table, configs):
    r = run(table, configs, budget_s=40.0, schedule=None)
    assert len(r.hv) == r.count(TrialStatus.COMPLETE) > 5
    assert all(b >= a for a, b in zip(r.hv, r.hv[1:]))
    assert r.times == sorted(r.times)
    assert 0 < r.final_hv <= 1.2
    assert r.hv_at(0.0) == 0.0 and r.hv_at(40.0) == r.final_hv


def test_every_lookup_exists_and_unknown_networks_are_refused(table, configs):
    r = run(table, configs)
    assert r.trials and all(t.arch_id in table for t in r.trials)
    for t in r.study.trials:
        assert record_of(t.user_attrs)[TrialKey.ARCH_ID] in table
        assert record_of(t.user_attrs)[TrialKey.PARAMS] == table[record_of(t.user_attrs)[TrialKey.ARCH_ID]].params
    missing = dict(table)
    missing.pop(arch_id(configs[0]))
    with pytest.raises(KeyError, match="not in the table"):
        replay(table=missing, spec=SPEC, sampler=optuna.samplers.RandomSampler(seed=0), budget_s=5.0, n_workers=1,
               schedule=None, seed=0, seeds_to_enqueue=[{"i": 0}], suggest=by_index(configs))


def test_front_tracker_matches_optuna(table):
    from optuna._hypervolume import compute_hypervolume

    ref = HVReference.from_rows(table.values())
    points = np.array([ref.point(r.final_accuracy(), r.params, r.macs) for r in table.values()])
    expected = compute_hypervolume(points, np.array([1.0, 1.05, 1.05]), assume_pareto=False)
    assert table_front_hv(table, ref) == pytest.approx(expected)
    tracker = FrontTracker()
    values = [tracker.add(p) for p in points]
    assert values == sorted(values) and values[-1] == pytest.approx(expected)


def test_table_file_round_trip_is_byte_stable(table, tmp_path):
    rows = list(table.values())
    digest = write_table(rows, tmp_path / "t.jsonl.gz")
    assert write_table(list(reversed(rows)), tmp_path / "u.jsonl.gz") == digest
    back = read_rows(tmp_path / "t.jsonl.gz")
    assert [r.arch_id for r in back] == sorted(table)
    assert back[0] == table[back[0].arch_id]


def test_default_suggest_is_the_search_encoding(table, configs):
    from igcnas.search_space.genome import genome_for

    genome = genome_for(SPEC)
    enqueue = [genome.encode(configs[-1]), genome.encode(configs[0])]
    r = replay(table=table, spec=SPEC, sampler=optuna.samplers.RandomSampler(seed=1), budget_s=10.0, n_workers=2,
               schedule=DEFAULT_SCHEDULE, seed=1, seeds_to_enqueue=enqueue)
    assert [t.arch_id for t in r.trials[:2]] == [arch_id(configs[-1]), arch_id(configs[0])]
    assert len(r.trials) > 2 and all(t.arch_id in table for t in r.trials)
