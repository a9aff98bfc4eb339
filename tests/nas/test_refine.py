"""`igc-nas refine`: finalists retrained longer beside the search, shared by workers, resumable, read by pick.

The study is synthetic (real configurations, made-up search accuracies, a search record of digits with a
two-batch epoch) so that each refinement is a real training of a fraction of a second.
"""

import json
import subprocess
import sys
import time

import pytest

from igcnas.cli import main
from igcnas.nas.budget import Budget
from igcnas.nas.pareto import hypervolume, ReferencePoint, trials_frame
from igcnas.nas.refine import Claims, Unit, finalists, plan_job, refined_results
from tests.conftest import make_study, record_evaluation


@pytest.fixture
def study_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'refine.db'}"
    study = make_study(url, "r", 24, seed=5)
    record_evaluation(study)
    return url, study


def _refine(url, *args):
    return main(["refine", "--storage", url, "--study", "r", "--epochs", "2", "--seeds", "0,1", "--top", "2",
                 *args])


def test_finalists_are_the_most_accurate_front_trials_within_the_budget_by_search_accuracy(study_url):
    _, study = study_url
    df = trials_frame(study)
    limit = float(df["params"].median())
    chosen = finalists(df, Budget(max_params=limit), 3)
    assert (chosen["params"] <= limit).all() and len(chosen) >= 1
    from igcnas.nas.pareto import pareto_mask

    front = df[pareto_mask(df)]
    inside = front[front["params"] <= limit].sort_values("search_val_accuracy", ascending=False)
    assert list(chosen["number"]) == list(inside["number"].head(3))


@pytest.mark.slow
def test_refine_then_pick_uses_the_refined_accuracy_and_says_so(study_url, capsys):
    url, study = study_url
    assert _refine(url) == 0
    out = capsys.readouterr().out
    assert "4 units: 0 done, 0 under way elsewhere, 4 to train" in out
    assert out.count("after 2 epochs") == 4 and "refine: 4 trained, 0 failed" in out
    refined = refined_results(study.user_attrs)
    assert len(refined) == 2 and all(len(r.accuracies) == 2 and r.epochs == 2 for r in refined.values())
    # The finalists now carry their refined mean; pick compares at the highest fidelity and says which.
    df = trials_frame(study)
    assert main(["pick", "--storage", url, "--study", "r"]) == 0
    picked = capsys.readouterr().out
    number = int(picked.split("picked trial ")[1].split(":")[0])
    row = df.set_index("number").loc[number]
    assert f"val acc {row['val_accuracy']:.4f}" in picked
    if number in refined:
        assert f"(refined, 2 epochs, mean of 2 seeds (sd {refined[number].std:.4f}); search " in picked
    else:
        assert "(search" in picked
    assert main(["trials", "--storage", url, "--study", "r"]) == 0
    listing = capsys.readouterr().out
    assert "search acc" in listing and listing.count("refined, 2 epochs") == 2


def test_the_hypervolume_stays_the_searchs_own(study_url):
    url, study = study_url
    reference = ReferencePoint(params=2e5, macs=5e6)
    before = hypervolume(trials_frame(study), reference)
    assert _refine(url, "--top", "1", "--seeds", "0") == 0
    assert hypervolume(trials_frame(study), reference) == before


@pytest.mark.slow
def test_a_second_run_resumes_and_a_dead_workers_claim_is_taken_over(study_url, capsys):
    url, study = study_url
    job, _ = plan_job(study, budget=Budget(), top=2, epochs=2, seeds=(0, 1), settle_s=0.0)
    first, second, third, fourth = sorted(job.units)
    study.set_user_attr(first.result_key, {"val_accuracy": 0.5, "epochs": 2, "seed": first.seed})  # done before
    study.set_user_attr(second.claim_key, {"owner": "gone:1:x", "beat": time.time() - 3600})  # a dead worker
    study.set_user_attr(third.claim_key, {"owner": "alive:2:y", "beat": time.time() + 3600})  # a live one
    assert _refine(url) == 0
    out = capsys.readouterr().out
    assert "4 units: 1 done, 1 under way elsewhere, 2 to train" in out
    assert "refine: 2 trained, 0 failed, 1 done before, 1 under way elsewhere" in out
    attrs = study.user_attrs
    assert attrs[first.result_key]["val_accuracy"] == 0.5  # never trained again
    assert second.result_key in attrs and fourth.result_key in attrs and third.result_key not in attrs
    assert _refine(url, "--dry-run") == 0
    assert "4 units: 3 done, 1 under way elsewhere, 0 to train" in capsys.readouterr().out


@pytest.mark.slow
def test_claims_go_to_the_last_writer_and_expire_with_the_grace_period(study_url):
    _, study = study_url
    now = [1000.0]
    a = Claims(study, interval=1, grace=10, settle_s=0.0, owner="a", clock=lambda: now[0])
    b = Claims(study, interval=1, grace=10, settle_s=0.0, owner="b", clock=lambda: now[0])
    unit = Unit(0, 2, 0)
    assert a.take(unit) == "mine" and b.take(unit) == "elsewhere"
    now[0] += 11  # a stopped beating
    assert b.take(unit) == "mine" and a.state(unit) == "elsewhere"
    b.release(unit)  # released without a result: free for anyone at once
    assert a.state(unit) == "free"
    study.set_user_attr(unit.result_key, {"val_accuracy": 0.9})
    assert a.take(unit) == "done"


@pytest.mark.slow
def test_two_workers_on_one_storage_share_the_units_without_training_one_twice(study_url, tmp_path):
    url, study = study_url
    command = [sys.executable, "-m", "igcnas.cli", "refine", "--storage", url, "--study", "r", "--epochs", "3",
               "--seeds", "0,1,2", "--top", "2"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trained = [int(out.split("refine: ")[1].split(" trained")[0]) for out, _ in outputs]
    assert sum(trained) == 6  # every unit once: a claimed unit is left to its owner
    assert len([k for k in study.user_attrs if k.startswith("igcnas:refined:")]) == 6


@pytest.mark.parametrize("args, message", [
    (["--seeds", "a,b"], "--seeds must be comma-separated"),
    (["--seeds", "1,1"], "--seeds must be comma-separated distinct"),
    (["--top", "0"], "--top must be >= 1"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--backend", "dask"], "backend must be one of"),
    (["--max-params", "10"], "nothing to refine"),
    (["--address", "127.0.0.1:1"], "--address and --gpus-per-trial need --backend ray"),
])
def test_bad_input_is_one_line_and_writes_nothing(study_url, capsys, args, message):
    url, study = study_url
    before = dict(study.user_attrs)
    assert _refine(url, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert dict(study.user_attrs) == before


@pytest.mark.slow
def test_the_dashboard_shows_both_figures_of_a_refined_trial(study_url):
    from igcnas.dashboards.data import collect
    from igcnas.dashboards.figures import build_figures

    url, study = study_url
    assert _refine(url, "--top", "1", "--seeds", "0") == 0
    payload = collect(study)
    refined = [t for t in payload["trials"] if (t["fidelity"] or "").startswith("refined")]
    assert len(refined) == 1
    # Every other trial says "search" (a string, also where the trial records no epochs: never NaN).
    assert {t["fidelity"] for t in payload["trials"] if t not in refined} == {"search"}
    t = refined[0]
    assert t["search_val_accuracy"] == study.trials[t["number"]].values[0] != t["val_accuracy"]
    figure = json.dumps(build_figures(payload)["pareto-params"])
    assert f"refined, 2 epochs, 1 seed (0); search {t['search_val_accuracy']:.4f}" in figure


def test_an_export_says_when_its_weights_were_trained_shorter_than_the_accuracy_it_was_picked_by():
    import pandas as pd

    from igcnas.nas.pick import weights_note

    refined = pd.Series({"refined_epochs": 30.0})
    assert "--retrain-epochs 30 exports a network trained that long" in weights_note(refined, None)
    assert weights_note(refined, 30) == ""  # retrained as long as refine trained: nothing to say
    assert weights_note(pd.Series({"refined_epochs": float("nan")}), None) == ""  # never refined
