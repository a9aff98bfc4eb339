import json

import pandas as pd
import pytest
import torch

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.models import load
from igcnas.nas.options import SearchOptions
from igcnas.nas.orchestrator import run_search
from igcnas.nas.pick import NothingFits, choose
from igcnas.nas.budget import Budget


def frame(rows):
    df = pd.DataFrame(rows, columns=["number", "val_accuracy", "params", "macs"])
    df["state"], df["feasible"], df["latency_ms"], df["structure"] = "COMPLETE", True, float("nan"), "x"
    return df


def test_choose_takes_the_most_accurate_within_budget_with_documented_ties():
    df = frame([(0, 0.90, 100, 1000), (1, 0.95, 300, 3000), (2, 0.95, 300, 2500), (3, 0.80, 50, 500)])
    assert int(choose(df, Budget())["number"]) == 2  # tie on accuracy and params: fewer MACs
    assert int(choose(df, Budget(max_params=200))["number"]) == 0
    assert int(choose(df, Budget(max_macs=600))["number"]) == 3
    with pytest.raises(NothingFits) as info:
        choose(df, Budget(max_params=10))
    assert int(info.value.nearest.iloc[0]["number"]) == 3  # the least over budget first
    assert "400.0% over" in str(info.value)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("pick")
    options = SearchOptions(output_dir=str(out), n_trials=3, epochs=1, max_batches_per_epoch=4, widths=(8, 16),
                            blocks=(1,), study="p")
    run_search(options)
    return out, f"sqlite:///{out / 'p' / 'study.db'}"


@pytest.mark.slow
def test_pick_export_and_load_reproduce_the_trained_weights(searched, tmp_path, capsys):
    out, url = searched
    assert main(["pick", "--storage", url, "--max-params", "50k", "--export", str(tmp_path / "m")]) == 0
    stdout = capsys.readouterr()[0]
    number = int(stdout.split("picked trial ")[1].split(":")[0])
    for name in ("config.json", "model.pt", "model.pt2", "report.md"):
        assert (tmp_path / "m" / name).is_file()
    model = load(tmp_path / "m")
    assert not model.training
    # The stored artifact of that trial: the very weights it was trained to.
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    study = optuna.load_study(study_name="p", storage=url)
    trial = study.trials[number]
    local = tmp_path / "w.pt"
    download_artifact(artifact_store=FileSystemArtifactStore(str(out / "p" / "artifacts")), file_path=str(local),
                      artifact_id=record_of(trial.user_attrs)["weights_artifact"])
    trained = torch.load(local, weights_only=True)
    assert all(torch.equal(trained[k], v) for k, v in model.state_dict().items())
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    exported = torch.export.load(str(tmp_path / "m" / "model.pt2")).module()
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-5)
    report = (tmp_path / "m" / "report.md").read_text()
    assert f"trial {number}" in report and "test accuracy" in report and "MACs" in report


@pytest.mark.slow
def test_pick_retrains_on_request(searched, tmp_path, capsys):
    _, url = searched
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "r"), "--retrain-epochs", "1"]) == 0
    assert "retrained for 1 epochs" in (tmp_path / "r" / "report.md").read_text()
    # --retrain alone takes the search's training settings (this study was searched for 1 epoch, not 4)
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "s"), "--retrain"]) == 0
    assert "retrained for 1 epochs" in (tmp_path / "s" / "report.md").read_text()


def test_nothing_fits_lists_the_nearest_and_exits_2(searched, tmp_path, capsys):
    _, url = searched
    assert main(["pick", "--storage", url, "--max-params", "100", "--export", str(tmp_path / "n")]) == 2
    err = capsys.readouterr()[1]
    assert "no trial on the front fits the budget; nearest: trial" in err and "% over" in err
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--max-params", "-1"], "--max-params must be"),
    (["--max-macs", "ten"], "--max-macs must be"),
    (["--max-latency-ms", "5"], "no trial of this study has a latency"),
    (["--retrain-epochs", "0"], "--retrain-epochs must be >= 1"),
])
def test_pick_bad_input(searched, capsys, argv, expected):
    _, url = searched
    assert main(["pick", "--storage", url, *argv]) == 2
    assert expected in capsys.readouterr()[1]


@pytest.mark.slow
def test_load_refuses_bad_export_directories(searched, tmp_path):
    _, url = searched
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "ok")]) == 0
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    with pytest.raises(ValueError, match="model.pt.*does not exist"):
        load(broken)
    torch.save({"not": "tensors"}, broken / "model.pt")
    with pytest.raises(ValueError, match="is not a state dict"):
        load(broken)

    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    torch.save(Evil(), broken / "model.pt")  # a pickle that would run code: refused by weights_only
    with pytest.raises(ValueError, match="is not a state dict saved with torch.save"):
        load(broken)
    state = torch.load(tmp_path / "ok" / "model.pt", weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, broken / "model.pt")
    with pytest.raises(ValueError, match="does not match config.json"):
        load(broken)
    (broken / "config.json").write_text(json.dumps({"family": "nope"}))
    with pytest.raises(ValueError, match="config field"):
        load(broken)


@pytest.mark.slow
def test_pick_scores_on_the_search_validation_split_not_its_own(tmp_path):
    """A study searched with --seed 3: pick evaluates on that split's images (checked by index)."""
    from igcnas.evaluators.datasets import load_dataset
    from igcnas.nas.pareto import pareto_front, trials_frame
    from igcnas.nas.pick import export_model

    options = SearchOptions(output_dir=str(tmp_path), n_trials=2, epochs=1, max_batches_per_epoch=3, widths=(8,),
                            blocks=(1,), study="s3", seed=3, val_fraction=0.25)
    outcome = run_search(options)
    df = trials_frame(outcome.study)
    row = choose(df, Budget())
    result = export_model(study=outcome.study, trial_row=row, directory=tmp_path / "out", front=pareto_front(df),
                          budget=Budget(), seed=0)
    searched = load_dataset("digits", seed=3, val_fraction=0.25)
    assert result.val_index == searched.val_index
    assert result.val_index != load_dataset("digits", seed=0, val_fraction=0.25).val_index
    assert result.val_index != load_dataset("digits", seed=3, val_fraction=0.2).val_index
    # and on those images the exported model scores what evaluating it directly on them gives
    from tests.conftest import plain_accuracy

    assert result.val_accuracy == plain_accuracy(load(tmp_path / "out"), searched.val_x, searched.val_y)
    assert "fraction 0.25" in (tmp_path / "out" / "report.md").read_text()


def test_pick_refuses_a_study_that_does_not_record_its_split(tmp_path, capsys):
    from tests.conftest import make_study

    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_study(url, "old", 6, seed=0)  # made outside the search: no evaluation record
    code = main(["pick", "--storage", url, "--export", str(tmp_path / "x"), "--retrain"])
    err = capsys.readouterr()[1]
    assert code == 2 and "does not record how it was searched" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_structured_pick_exports_the_deployed_form_and_loads_back(tmp_path, capsys):
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    from igcnas.models.structured import StructuredConv2d, SumPoolConv2d
    from igcnas.search_space.config_io import config_from_dict

    options = SearchOptions(output_dir=str(tmp_path), n_trials=3, epochs=1, max_batches_per_epoch=4, widths=(8,),
                            blocks=(1,), study="s", structured=True, seed_balanced=False)
    run_search(options)
    url = f"sqlite:///{tmp_path / 's' / 'study.db'}"
    study = optuna.load_study(study_name="s", storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and any(config_from_dict(record_of(t.user_attrs)["config"]).stages[i].structured for i in range(3))]
    assert done, "no structured trial completed"
    assert main(["pick", "--storage", url, "--study", "s", "--export", str(tmp_path / "m")]) == 0
    number = int(capsys.readouterr()[0].split("picked trial ")[1].split(":")[0])
    model = load(tmp_path / "m")
    assert any(s.structured for s in config_from_dict(record_of(study.trials[number].user_attrs)["config"]).stages)
    assert any(isinstance(m, SumPoolConv2d) for m in model.modules())  # the deployed form ...
    assert not any(isinstance(m, StructuredConv2d) for m in model.modules())  # ... not the training form
    local = tmp_path / "w.pt"
    download_artifact(artifact_store=FileSystemArtifactStore(str(tmp_path / "s" / "artifacts")), file_path=str(local),
                      artifact_id=record_of(study.trials[number].user_attrs)["weights_artifact"])
    stored = torch.load(local, weights_only=True)
    assert stored.keys() == model.state_dict().keys()
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())
