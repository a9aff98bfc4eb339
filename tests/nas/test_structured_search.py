"""``igc-nas search --structured on``: a real tiny search on the bundled digits data through the CLI."""

import optuna
import pytest

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.evaluators.settings import TrainSettings
from igcnas.nas.options import SearchOptions
from igcnas.search_space.config_io import config_from_dict
from igcnas.search_space.costs import closed_form_costs

TINY = ["--epochs", "1", "--max-batches-per-epoch", "5", "--width", "8", "--width", "16", "--blocks", "1",
        "--family", "igcv2", "--family", "xception", "--no-early-stopping", "--no-dashboard", "--seed", "0"]


def run(tmp_path, capsys, study, *extra):
    code = main(["search", *TINY, "--output-dir", str(tmp_path), "--study", study, *extra])
    err = capsys.readouterr()[1]
    assert code == 0, err
    return optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path / study / 'study.db'}")


def structured(trial):
    return any(stage.get("small_kernel") is not None or stage.get("channel_reduction") is not None
               for stage in record_of(trial.user_attrs)["config"]["stages"])


@pytest.mark.slow
def test_structured_search_trains_structured_and_plain_networks(tmp_path, capsys):
    # 4 plain seed networks (balance-condition IGC-V2 and Xception at both widths), then bred children.
    study = run(tmp_path, capsys, "s", "--n-trials", "10", "--structured", "on")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 10
    kinds = {structured(t) for t in complete}
    assert kinds == {True, False}
    assert all("s0.sk" in t.params and "s2.cr" in t.params for t in complete)
    assert study.user_attrs["igcnas:search_spec"]["structured"] is True
    assert study.user_attrs["igcnas:evaluation"]["structured_mode"] == "regularised"
    for t in complete:
        config = config_from_dict(record_of(t.user_attrs)["config"])
        assert t.values[1] == closed_form_costs(config).params  # the deployed network's params are the objective
        if structured(t):
            assert record_of(t.user_attrs)["structured_mode"] == "regularised"
            assert isinstance(record_of(t.user_attrs)["projection_gap"], float)
        else:
            assert "projection_gap" not in record_of(t.user_attrs)


@pytest.mark.slow
def test_structured_search_in_direct_mode_completes(tmp_path, capsys):
    study = run(tmp_path, capsys, "d", "--n-trials", "3", "--structured", "on", "--structured-mode", "direct",
                "--no-seed-balanced")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    direct = [t for t in complete if structured(t)]
    assert direct and all(record_of(t.user_attrs)["structured_mode"] == "direct" for t in direct)
    assert study.user_attrs["igcnas:evaluation"]["structured_mode"] == "direct"


def test_structured_flags_default_off_and_bad_values_name_the_flag(capsys):
    options, trainer = SearchOptions(), TrainSettings()
    assert options.structured is False and options.structured_mode == trainer.structured_mode
    assert options.train_settings(seed=0).structure_lambda == options.structure_lambda == trainer.structure_lambda
    assert SearchOptions(structure_lambda=0.5, structured_mode="direct").train_settings(seed=0).model_form == "deployed"
    for argv, message in ((["--structured", "maybe"], "--structured must be one of on, off"),
                          (["--structured-mode", "soft"], "--structured-mode must be one of regularised, direct"),
                          (["--structure-lambda", "-1"], "--structure-lambda must be a number >= 0")):
        assert main(["search", *argv]) == 2
        assert message in capsys.readouterr()[1]
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr()[0]
    assert "--structured on|off" in out and "--structured-mode" in out and "--structure-lambda" in out
