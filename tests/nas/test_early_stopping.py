"""Multi-objective successive halving: the rule, and the Optuna backend applying it with the study's data."""

import optuna
import pytest

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.nas.early_stopping import (RungEntry, RungSchedule, domination_counts, fidelity_key, rung_population,
                                       should_promote)
from igcnas.nas.objectives import OBJECTIVES
from igcnas.nas.options import SearchOptions
from igcnas.nas.study import open_storage, open_study


@pytest.mark.parametrize("max_epochs, min_epochs, eta, rungs", [
    (4, 1, 3, (1, 3)), (9, 1, 3, (1, 3)), (10, 1, 3, (1, 3, 9)), (8, 1, 2, (1, 2, 4)), (4, 2, 2, (2,)),
    (1, 1, 3, ()), (3, 3, 3, ()),
])
def test_rungs_are_geometric_and_below_the_full_budget(max_epochs, min_epochs, eta, rungs):
    assert RungSchedule(max_epochs=max_epochs, min_epochs=min_epochs, eta=eta).rungs == rungs


@pytest.mark.parametrize("kwargs, field", [({"eta": 1}, "eta"), ({"min_epochs": 0}, "min-epochs"),
                                           ({"max_epochs": 0}, "epochs")])
def test_bad_schedule_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RungSchedule(**{"max_epochs": 4, **kwargs})


def test_domination_counts_on_all_three_objectives():
    entries = [RungEntry(0.9, 10, 10), RungEntry(0.8, 20, 20), RungEntry(0.95, 30, 5), RungEntry(0.9, 10, 10),
               RungEntry(0.5, 1, 100)]
    # 0 and 3 are equal (neither dominates the other); both dominate 1; 2 dominates nobody on params;
    # 4 is the smallest network: nothing dominates it however poor its accuracy.
    assert domination_counts(entries).tolist() == [0, 2, 0, 0, 0]


def test_promotion_keeps_the_best_fraction_and_everything_non_dominated():
    front = [RungEntry(0.6 + 0.05 * i, 1000 * (i + 1), 10_000 * (i + 1)) for i in range(5)]
    assert should_promote(RungEntry(0.1, 500, 5_000), front, 3)[0]  # smaller than all: on the front
    promote, dominated_by, threshold = should_promote(RungEntry(0.5, 5_000, 50_000), front, 3)
    assert (promote, dominated_by, threshold) == (False, 5, 0)
    assert should_promote(RungEntry(0.99, 5_000, 50_000), front, 3)[0]
    assert should_promote(RungEntry(0.0, 1e9, 1e9), [], 3)[0]  # an empty rung never stops the first trial
    # Everyone dominated: the best 1/eta by domination count go on, ties included.
    crowd = [RungEntry(0.9, 1, 1)] + [RungEntry(0.5 - 0.01 * i, 100 + i, 100 + i) for i in range(8)]
    assert should_promote(RungEntry(0.6, 50, 50), crowd, 3)[0]  # dominated by 1 only
    assert not should_promote(RungEntry(0.3, 500, 500), crowd, 3)[0]  # dominated by all 9


def test_rung_population_uses_only_trials_that_reached_the_rung():
    records = [([0.5, 0.7, 0.8], 10, 100), ([0.4], 20, 200), ([], 5, 5)]
    assert rung_population(records, 1) == [RungEntry(0.5, 10, 100), RungEntry(0.4, 20, 200)]
    assert rung_population(records, 2) == [RungEntry(0.7, 10, 100)]


def _dominating_study(url: str, name: str, fidelity: str, n: int = 3) -> None:
    """A study whose earlier trials dominate anything on (rung accuracy, params, MACs): 100% with 1 param."""
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=name, storage=storage, directions=[o.direction for o in OBJECTIVES])
    study.add_trials([optuna.trial.create_trial(
        values=[1.0, 1.0, 1.0],
        user_attrs={"params": 1, "macs": 1, "curve": [1.0, 1.0, 1.0], "fidelity": fidelity, "status": "complete",
                    "structure": "synthetic"}) for _ in range(n)])


# The mechanism is tested with a first rung at epoch 1 (the default's is at 2), so trials stop early.
SEARCH = ["search", "--epochs", "3", "--max-batches-per-epoch", "2", "--width", "8", "--blocks", "1",
          "--n-trials", "3", "--no-seed-balanced", "--study", "es", "--min-epochs", "1"]


def test_dominated_trials_stop_at_the_first_rung_and_count_as_trained(tmp_path, capsys):
    fidelity = SearchOptions(epochs=3, max_batches_per_epoch=2).fidelity
    assert fidelity == fidelity_key(epochs=3, batch_size=64, lr=0.05, max_batches_per_epoch=2,
                                    recalibrate_plain=True)
    url = f"sqlite:///{tmp_path / 'es.db'}"
    _dominating_study(url, "es", fidelity)
    code = main([*SEARCH, "--storage", url, "--output-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "early stopping at epochs 1" in err
    study = open_study(open_storage(url, heartbeat=False), "es", create=False)
    new = [t for t in study.trials if t.number >= 3]
    stopped = [t for t in new if record_of(t.user_attrs).get("status") == "stopped_early"]
    assert len(stopped) == 3, [(t.state, record_of(t.user_attrs).get("status")) for t in new]
    for t in stopped:
        assert t.state == optuna.trial.TrialState.PRUNED
        assert record_of(t.user_attrs)["stopped_at_epoch"] == 1
        record = record_of(t.user_attrs)
        assert len(record["curve"]) == 1 and record["rungs"] == {"1": record["curve"][0]}
        assert record_of(t.user_attrs)["fidelity"] == fidelity
    # The first is compared with the three earlier trials; later ones also with the trials stopped before them.
    assert "dominated by 3 of 3 trials" in record_of(stopped[0].user_attrs)["stop_reason"]
    assert "of 4 trials" in record_of(stopped[1].user_attrs)["stop_reason"]
    assert "stopped early at epoch 1" in err
    # The summary counts this run's trials only (the three dominating ones are earlier).
    assert f"this run trained {len(new) - 3} to the end and stopped 3 early" in out


@pytest.mark.slow
def test_other_schedules_are_not_compared_and_no_early_stopping_trains_to_the_end(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'es.db'}"
    # Dominating trials trained with another schedule do not count at this run's rungs.
    _dominating_study(url, "es", fidelity_key(epochs=9, batch_size=64, lr=0.05, max_batches_per_epoch=2,
                                                recalibrate_plain=True))
    assert main([*SEARCH, "--storage", url, "--output-dir", str(tmp_path), "--n-trials", "1"]) == 0
    url2 = f"sqlite:///{tmp_path / 'es2.db'}"
    _dominating_study(url2, "es", SearchOptions(epochs=3, max_batches_per_epoch=2).fidelity)
    assert main([*SEARCH, "--storage", url2, "--output-dir", str(tmp_path), "--no-early-stopping"]) == 0
    capsys.readouterr()
    for u, n in ((url, 1), (url2, 3)):
        study = open_study(open_storage(u, heartbeat=False), "es", create=False)
        new = [t for t in study.trials if t.number >= 3]
        assert len(new) == n
        assert all(t.state == optuna.trial.TrialState.COMPLETE and len(record_of(t.user_attrs)["curve"]) == 3
                   for t in new)


def test_early_stopping_options_are_validated(tmp_path, capsys):
    for flag, value, field in (("--eta", "1", "eta"), ("--min-epochs", "0", "min-epochs")):
        code = main(["search", flag, value, "--output-dir", str(tmp_path)])
        err = capsys.readouterr()[1]
        assert code == 2 and field in err and "Traceback" not in err
    assert not (tmp_path / "igc-nas-digits").exists()
