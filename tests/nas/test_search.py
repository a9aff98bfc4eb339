import json
import sqlite3
from pathlib import Path

import optuna
import pytest

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.nas.options import SearchOptions
from igcnas.nas.orchestrator import run_search
from igcnas.nas.study import open_storage, open_study
from igcnas.nas.objectives import OBJECTIVES, objectives_for
from igcnas.search_space.config_io import config_from_dict
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import arch_id

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-sample"


def quick(tmp_path, **changes):
    base = dict(output_dir=str(tmp_path), n_trials=3, epochs=1, max_batches_per_epoch=3, widths=(8, 16),
                blocks=(1,), study="t")
    base.update(changes)
    return SearchOptions(**base)


@pytest.mark.slow
def test_search_records_everything_needed_to_rebuild_and_continues(tmp_path):
    first = run_search(quick(tmp_path))
    study = first.study
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert first.report.trained == 3 and len(complete) == 3
    assert study.metric_names == ["val_accuracy", "params", "macs"]
    for t in complete:
        config = config_from_dict(record_of(t.user_attrs)["config"])
        assert arch_id(config) == record_of(t.user_attrs)["arch_id"]
        costs = closed_form_costs(config)
        assert t.values[1] == costs.params and t.values[2] == costs.macs  # fvcore-measured == closed form
        assert len(record_of(t.user_attrs)["curve"]) == 1 and t.values[0] == record_of(t.user_attrs)["curve"][-1]
        assert record_of(t.user_attrs)["fvcore_macs"] == costs.macs
    assert (tmp_path / "t" / "study.db").is_file() and first.files["trials"].is_file()
    before = {t.number: (t.values, t.params) for t in complete}

    with pytest.raises(ValueError, match="was searched with --seed 0"):
        run_search(quick(tmp_path, seed=1))  # another split would score trials on other images
    second = run_search(quick(tmp_path))
    trials = {t.number: t for t in second.study.trials}
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials.values()) == 6
    for number, (values, params) in before.items():
        assert trials[number].values == values and trials[number].params == params


def test_recalibrate_bn_is_recorded_and_keeps_its_trials_apart_at_the_rungs(tmp_path, capsys):
    """--recalibrate-bn (on by default): recorded for pick and refine, and in the fidelity key, so a rung never
    compares trials evaluated with and without BatchNorm re-estimation."""
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    common = ["search", "--storage", url, "--study", "bn", "--output-dir", str(tmp_path), "--n-trials", "1",
              "--epochs", "1", "--max-batches-per-epoch", "2", "--width", "8", "--blocks", "1"]
    assert main([*common]) == 0
    assert main([*common, "--recalibrate-bn", "off"]) == 0
    study = open_study(open_storage(url, heartbeat=False), "bn", create=False)
    assert study.user_attrs["igcnas:evaluation"]["recalibrate_plain"] is True  # the first run's record stays
    keys = [record_of(t.user_attrs)["fidelity"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert keys[0].endswith("/bn") and keys[-1] == keys[0].removesuffix("/bn")
    assert main([*common, "--recalibrate-bn", "maybe"]) == 2
    assert "--recalibrate-bn must be one of on, off" in capsys.readouterr().err


def test_budget_nothing_meets_fails_before_touching_the_study(tmp_path):
    with pytest.raises(ValueError, match="no configuration meets --max-params"):
        run_search(quick(tmp_path, max_params=50))
    assert not (tmp_path / "t" / "study.db").exists()


def test_budget_some_meet_trains_only_those(tmp_path):
    limit = 3000
    outcome = run_search(quick(tmp_path, n_trials=3, max_params=limit, sampler="random"))
    trained = [t for t in outcome.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    skipped = [t for t in outcome.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(trained) == 3
    assert all(t.values[1] <= limit and t.constraints["max_params"] <= 0 for t in trained)
    assert all(record_of(t.user_attrs)["params"] > limit and "curve" not in record_of(t.user_attrs) for t in skipped)
    assert all(record_of(t.user_attrs)["status"] == "over_budget" for t in skipped)


@pytest.mark.slow
def test_cli_search_on_the_real_cifar_sample(tmp_path, capsys):
    if not SAMPLE.is_dir():
        pytest.skip("shared CIFAR-10 sample not present")
    code = main(["search", "--dataset", "cifar10", "--data-dir", str(SAMPLE), "--n-trials", "2", "--epochs", "1",
                 "--max-batches-per-epoch", "2", "--width", "8", "--blocks", "1", "--output-dir", str(tmp_path),
                 "--family", "igcv2", "--family", "xception"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Pareto front" in out and "trial    1" in err
    db = tmp_path / "igc-nas-cifar10" / "study.db"
    code = main(["trials", "--storage", f"sqlite:///{db}", "--study", "igc-nas-cifar10", "--json"])
    rows = json.loads(capsys.readouterr()[0])
    assert code == 0 and len(rows) == 2 and {r["family"] for r in rows} <= {"igcv2", "xception"}


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--dataset", "mnist"], "dataset must be one of"),
        (["--dataset", "cifar10", "--data-dir", "/no/such/dir"], "does not exist"),
        (["--dataset", "cifar10"], "needs --data-dir"),
        (["--storage", "not a url"], "not a valid storage URL"),
        (["--storage", "sqlite:////no/such/folder/x.db"], "does not exist"),
        (["--max-params", "-3"], "--max-params must be"),
        (["--max-macs", "12Q"], "--max-macs must be"),
        (["--max-latency-ms", "0"], "--max-latency-ms must be > 0"),
        (["--sampler", "cmaes"], "sampler must be one of"),
        (["--backend", "dask"], "backend must be one of"),
        (["--family", "resnet"], "family must be one of"),
        (["--n-trials", "0"], "n-trials must be"),
        (["--max-params", "10"], "no configuration meets --max-params"),
    ],
)
def test_search_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, expected):
    code = main(["search", "--output-dir", str(tmp_path), *argv])
    _, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("igc-nas: error")]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err
    assert not list(tmp_path.rglob("*.db"))  # nothing written


@pytest.mark.slow
def test_trials_on_a_missing_study_is_a_clear_error(tmp_path, capsys):
    run_search(quick(tmp_path, n_trials=1))
    code = main(["trials", "--storage", f"sqlite:///{tmp_path / 't' / 'study.db'}", "--study", "nope"])
    assert code == 2 and "study 'nope' does not exist" in capsys.readouterr()[1]


def test_open_study_refuses_other_objectives(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=False)
    optuna.create_study(study_name="x", storage=storage, directions=["maximize"])
    with pytest.raises(ValueError, match="exists with objectives"):
        open_study(storage, "x", create=True, objectives=OBJECTIVES)
    assert sqlite3.connect(tmp_path / "s.db").execute("select count(*) from studies").fetchone() == (1,)


def test_metric_names_include_latency_when_searched(tmp_path):
    outcome = run_search(quick(tmp_path, n_trials=1, latency_objective=True, study="lat"))
    assert outcome.study.metric_names == [o.name for o in objectives_for(latency=True)]
    assert outcome.study.metric_names == ["val_accuracy", "params", "macs", "latency_ms"]


def test_every_objective_is_read_from_the_evaluation_by_its_name():
    """The objectives table is the one edit: an evaluation tells Optuna each objective's field of the same
    name, in the table's order, latency included."""
    import dataclasses

    from igcnas.nas.trial_evaluation import Evaluation
    from igcnas.search_space.paper_networks import cifar_network

    everything = objectives_for(latency=True)
    fields = {f.name for f in dataclasses.fields(Evaluation)}
    assert {o.name for o in everything} <= fields
    ev = Evaluation(config=cifar_network("xception", 35, 20), status="complete", val_accuracy=0.5, params=7, macs=11,
                    latency_ms=0.25)
    assert ev.objective_values(everything) == (0.5, 7.0, 11.0, 0.25)
    assert ev.objective_values(tuple(reversed(OBJECTIVES))) == (11.0, 7.0, 0.5)
