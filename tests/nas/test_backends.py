"""The backend contract, run over every backend (as Optuna runs its storage tests over every storage).

The same small search goes through each backend with the same checks: what ``--n-trials`` counts,
what every trial records, budgets, the study's metric names and evaluation record, options the
backend does not honour refused, and a trial whose weights cannot be stored never ends COMPLETE.
The Ray backend runs on the real two-node loopback cluster of ``tests/nas/conftest.py``.
"""

import optuna
import pytest

from igcnas.errors import BadInput
from igcnas.nas.backends import Backend, get_backend
from igcnas.nas.options import BACKENDS as REGISTERED
from igcnas.nas.objectives import OBJECTIVES
from igcnas.nas.options import SearchOptions
from igcnas.nas.orchestrator import run_search
from igcnas.nas.records import StudyKey, TrialKey, TrialStatus, record_of
from igcnas.search_space.config_io import config_from_dict
from igcnas.search_space.costs import closed_form_costs

BACKENDS = sorted(REGISTERED)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """(name, extra options): the Ray backend joins the module's loopback cluster."""
    if request.param == "ray":
        return "ray", {"address": request.getfixturevalue("ray_cluster")}
    return request.param, {}


def small(tmp_path, name, extra, **changes):
    base = dict(output_dir=str(tmp_path), n_trials=3, epochs=2, max_batches_per_epoch=3, widths=(8,), blocks=(1,),
                study=f"contract-{name}", backend=name, **extra)
    base.update(changes)
    return SearchOptions(**base)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_meets_the_protocol(name):
    backend = get_backend(name)
    assert isinstance(backend, Backend) and backend.name == name
    defaults = SearchOptions()
    assert all(hasattr(defaults, option) for option in backend.unsupported)


@pytest.mark.slow
def test_a_small_search_records_the_same_things(backend, tmp_path):
    name, extra = backend
    outcome = run_search(small(tmp_path, name, extra))
    report, study = outcome.report, outcome.study
    assert report.trained + report.stopped_early == 3  # --n-trials counts trained trials on every backend
    assert study.metric_names == [o.name for o in OBJECTIVES]
    record = study.user_attrs[StudyKey.EVALUATION]
    assert record["dataset"] == "digits" and record["split_seed"] == 0 and record["epochs"] == 2
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == report.trained + report.stopped_early + report.skipped + report.failed
    for t in finished:
        assert TrialStatus(record_of(t.user_attrs)[TrialKey.STATUS])  # a known status, on every trial
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == report.trained >= 1
    for t in complete:
        costs = closed_form_costs(config_from_dict(record_of(t.user_attrs)[TrialKey.CONFIG]))
        assert t.values[1] == costs.params == record_of(t.user_attrs)[TrialKey.PARAMS]
        assert t.values[2] == costs.macs == record_of(t.user_attrs)[TrialKey.MACS]
        record = record_of(t.user_attrs)
        assert t.values[0] == record[TrialKey.CURVE][-1] and len(record[TrialKey.CURVE]) == 2
        assert record[TrialKey.STATUS] == TrialStatus.COMPLETE and record[TrialKey.WEIGHTS_ARTIFACT]
    for t in finished:
        if record_of(t.user_attrs)[TrialKey.STATUS] == TrialStatus.STOPPED_EARLY:
            assert t.state == optuna.trial.TrialState.PRUNED and len(record_of(t.user_attrs)[TrialKey.CURVE]) == 1
    assert outcome.files["trials"].is_file() and outcome.files["summary"].is_file()


@pytest.mark.slow
def test_over_budget_samples_are_not_counted_as_trials(backend, tmp_path):
    name, extra = backend
    limit = 2000
    outcome = run_search(small(tmp_path, name, extra, study=f"budget-{name}", max_params=limit, sampler="random",
                               seed_balanced=False, early_stopping=False))
    trials = [t for t in outcome.study.trials if t.state.is_finished()]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    over = [t for t in trials if record_of(t.user_attrs).get(TrialKey.STATUS) == TrialStatus.OVER_BUDGET]
    assert len(complete) == outcome.report.trained == 3
    assert all(t.values[1] <= limit for t in complete)
    assert all(t.state == optuna.trial.TrialState.PRUNED and record_of(t.user_attrs)[TrialKey.PARAMS] > limit
               and TrialKey.CURVE not in record_of(t.user_attrs) for t in over)
    assert outcome.report.skipped == len(over)


@pytest.mark.parametrize("name", BACKENDS)
def test_options_a_backend_does_not_honour_are_refused(name, tmp_path):
    backend = get_backend(name)
    samples = {"address": "127.0.0.1:1", "cpus_per_trial": 2, "max_concurrent": 2, "total_trials": 5, "n_jobs": 2,
               "gpus_per_trial": 0.5, "devices": ("cpu",)}
    assert backend.unsupported <= set(samples)
    for option in sorted(backend.unsupported):
        with pytest.raises(BadInput, match=f"is not supported by the {name} backend"):
            run_search(small(tmp_path, name, {}, **{option: samples[option]}))
    assert not list(tmp_path.rglob("*.db"))  # refused before anything is written


@pytest.mark.slow
def test_a_failed_weight_upload_fails_the_trial(backend, tmp_path, monkeypatch):
    name, extra = backend
    import igcnas.nas.study as study_module

    def broken(*args, **kwargs):
        raise OSError("artifact store is full")

    monkeypatch.setattr(study_module, "store_weights", broken)
    with pytest.raises(Exception, match="trials failed and none completed"):
        run_search(small(tmp_path, name, extra, study=f"upload-{name}", n_trials=1, early_stopping=False,
                         seed_balanced=False))
    import optuna as ot

    storage = f"sqlite:///{tmp_path / f'upload-{name}' / 'study.db'}"
    trials = ot.load_study(study_name=f"upload-{name}", storage=storage).trials
    assert trials and not [t for t in trials if t.state == ot.trial.TrialState.COMPLETE]
    assert all("artifact store is full" in record_of(t.user_attrs).get(TrialKey.FAIL_REASON, "") for t in trials
               if t.state.is_finished())


@pytest.mark.slow
def test_per_trial_limits_are_honoured(backend, tmp_path):
    name, extra = backend
    with pytest.raises(Exception, match="trials failed and none completed"):
        run_search(small(tmp_path, name, extra, study=f"timeout-{name}", n_trials=1, trial_timeout=1e-6,
                         early_stopping=False, seed_balanced=False))
    import optuna as ot

    storage = f"sqlite:///{tmp_path / f'timeout-{name}' / 'study.db'}"
    failed = ot.load_study(study_name=f"timeout-{name}", storage=storage).get_trials(
        states=(ot.trial.TrialState.FAIL,))
    assert failed and all("time limit" in record_of(t.user_attrs)[TrialKey.FAIL_REASON] for t in failed)


@pytest.mark.slow
def test_refine_records_each_unit_beside_the_search_and_resumes(backend, tmp_path):
    """Both backends refine the same finalists, write one result per (trial, epochs, seed) on the study and
    never touch the trial; a second run finds everything done and trains nothing."""
    from igcnas.nas.budget import Budget
    from igcnas.nas.pareto import trials_frame
    from igcnas.nas.refine import plan_job, refined_results
    from tests.conftest import make_study, record_evaluation

    name, extra = backend
    study = make_study(f"sqlite:///{tmp_path / 'refine.db'}", f"refine-{name}", 12, seed=3)
    record_evaluation(study)
    values_before = {t.number: tuple(t.values) for t in study.trials}
    job, chosen = plan_job(study, budget=Budget(), top=2, epochs=2, seeds=(0, 1), settle_s=0.0, **extra)
    assert len(job.units) == 4 and len(chosen) == 2
    seen = []
    report = get_backend(name).refine(job, on_result=lambda unit, result: seen.append(unit))
    assert (report.trained, report.failed, report.already_done) == (4, 0, 0) and sorted(seen) == sorted(job.units)
    attrs = study.user_attrs
    for unit in job.units:
        result = attrs[unit.result_key]
        assert 0.0 <= result["val_accuracy"] <= 1.0 and len(result["curve"]) == 2 and result["seed"] == unit.seed
        assert result["host"]
    assert {t.number: tuple(t.values) for t in study.trials} == values_before  # the search's figures stay
    refined = refined_results(attrs)
    df = trials_frame(study).set_index("number")
    for number in chosen["number"]:
        accuracies = [attrs[u.result_key]["val_accuracy"] for u in job.units if u.trial == number]
        assert df.at[number, "val_accuracy"] == pytest.approx(sum(accuracies) / 2) == refined[number].mean
        assert df.at[number, "search_val_accuracy"] == values_before[number][0]
        assert df.at[number, "fidelity"].startswith("refined, 2 epochs, mean of 2 seeds")
    again = get_backend(name).refine(job)
    assert (again.trained, again.already_done) == (0, 4)
