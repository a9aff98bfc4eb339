"""The dashboard's latency view: accuracy against latency beside accuracy against MACs, and where they disagree.

The study is synthetic (no training, no timing): latency is made to follow MACs except that some families
pay more per MAC, which is exactly the case where a MACs front recommends networks that are slow.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from igcnas.dashboards import dashboard_data, write_report
from igcnas.dashboards.data import collect
from igcnas.nas.records import RECORD_ATTR, StudyKey, TrialKey, check_record, record_of
from igcnas.nas.selection import dominance_matrix
from igcnas.nas.study import open_storage
from tests.conftest import make_study

DESCRIBE = "torch 2.13.0+cpu, 1 thread(s), batch 1, 1x8x8 input, Test CPU (2 cores)"
# Milliseconds per 100k MACs by family: many small groups (IGCV2) do fewer MACs but not in less time.
MS_PER_100K_MACS = {"igcv2": 3.0, "igcv2_star": 3.0, "igcv1": 0.45, "deep_roots": 0.3}
SLOW = {"igcv2", "igcv2_star"}


def make_latency_study(url: str, name: str = "lat", n: int = 60, *, record: bool = True) -> optuna.Study:
    """``make_study``'s trials again, with a predicted latency, a measured one (most trials) and the record."""
    base = make_study(url, f"{name}-base", n, seed=1, infeasible_every=7)
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=name, storage=storage, directions=[d for d in base.directions])
    for key, value in base.user_attrs.items():
        study.set_user_attr(key, value)
    if record:
        study.set_user_attr(StudyKey.LATENCY, {"source": "predicted", "describe": DESCRIBE, "table": "/t.json.gz",
                                               "fingerprint": {"runtime": "torch"}, "calibration": [1.0, 0.0, 0.0]})
    trials = []
    for t in base.trials:
        attrs = record_of(t.user_attrs)
        predicted = round(0.05 + attrs[TrialKey.MACS] / 1e5 * MS_PER_100K_MACS.get(attrs[TrialKey.FAMILY], 1.0), 5)
        attrs.update({TrialKey.LATENCY_MS: predicted, TrialKey.LATENCY_SOURCE: "predicted"})
        if t.number % 5:  # some trials were never timed after training
            attrs[TrialKey.LATENCY_MEASURED_MS] = round(predicted * 1.1, 5)
        trials.append(optuna.trial.create_trial(values=t.values, user_attrs={RECORD_ATTR: check_record(attrs)},
                                                system_attrs=t.system_attrs))
    study.add_trials(trials)
    return study


@pytest.fixture
def latency_study(tmp_path) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'lat.db'}"
    return url, make_latency_study(url)


def _front_by_brute_force(trials: list[dict], cost: str) -> set[int]:
    """The (accuracy, cost) front by the definition: complete, feasible, nothing dominates it."""
    pool = [t for t in trials if t["state"] == "COMPLETE" and t["feasible"] and t["latency_ms"] is not None]
    points = np.array([[-t["val_accuracy"], t[cost]] for t in pool])
    dominated = dominance_matrix(points).any(axis=0)
    return {t["number"] for t, d in zip(pool, dominated) if not d}


@pytest.mark.slow
def test_payload_has_latency_record_timings_and_both_fronts(latency_study):
    _, study = latency_study
    payload = collect(study)
    assert payload["latency"] == {"source": "predicted", "describe": DESCRIBE}
    assert payload["latency_measured"] is True
    trials = payload["trials"]
    by_number = {t["number"]: t for t in trials}
    assert all(t["latency_source"] == "predicted" and t["latency_ms"] > 0 for t in trials)
    assert by_number[0]["latency_measured_ms"] is None  # never timed after training
    assert by_number[1]["latency_measured_ms"] == pytest.approx(by_number[1]["latency_ms"] * 1.1, rel=1e-4)
    view = payload["latency_view"]
    by_macs, by_latency = _front_by_brute_force(trials, "macs"), _front_by_brute_force(trials, "latency_ms")
    assert set(view["macs_front"]) == by_macs and set(view["front"]) == by_latency
    assert set(view["macs_only"]) == by_macs - by_latency and set(view["latency_only"]) == by_latency - by_macs
    # The synthetic latency punishes some families per MAC: the fronts must disagree both ways, and the
    # networks MACs recommend but latency does not are those families.
    assert view["macs_only"] and view["latency_only"]
    assert {by_number[n]["family"] for n in view["macs_only"]} <= SLOW
    assert not {by_number[n]["family"] for n in view["latency_only"]} & SLOW
    assert {t["number"] for t in trials if t["front_latency"]} == by_latency
    assert not any(by_number[n]["feasible"] is False for n in view["front"])


@pytest.mark.slow
def test_latency_figure_front_rings_and_title(latency_study):
    _, study = latency_study
    data = dashboard_data(study)
    view = data["payload"]["latency_view"]
    fig = data["figures"]["pareto-latency"]
    roles = {tr["meta"]: tr for tr in fig["data"]}
    assert list(roles) == ["dominated", "infeasible", "front", "macs-only", "latency-only", "pick"]
    assert sorted(c[0] for c in roles["front"]["customdata"]) == view["front"]
    assert sorted(c[0] for c in roles["macs-only"]["customdata"]) == view["macs_only"]
    assert sorted(c[0] for c in roles["latency-only"]["customdata"]) == view["latency_only"]
    assert roles["front"]["x"] == sorted(roles["front"]["x"])  # drawn as a staircase, cheapest first
    assert fig["layout"]["xaxis"]["type"] == "log"
    assert "predicted latency" in fig["layout"]["title"]["text"] and DESCRIBE in fig["layout"]["title"]["text"]
    hover = roles["dominated"]["customdata"][0][6]  # [5] is the accuracy's fidelity
    assert "predicted" in hover and "measured after training" in " ".join(
        c[6] for c in roles["dominated"]["customdata"] + roles["front"]["customdata"])
    # The MACs plot keeps its (accuracy, params, MACs) front and gets the same rings; params is untouched.
    macs = {tr["meta"]: tr for tr in data["figures"]["pareto-macs"]["data"]}
    assert sorted(c[0] for c in macs["front"]["customdata"]) == data["payload"]["front"]
    assert "macs-only" in macs and "latency-only" in macs
    assert "macs-only" not in {tr["meta"] for tr in data["figures"]["pareto-params"]["data"]}


def test_study_without_latency_has_no_latency_figure(tmp_path):
    study = make_study(f"sqlite:///{tmp_path / 'plain.db'}", "plain", 20, seed=2)
    data = dashboard_data(study)
    payload = data["payload"]
    assert payload["latency"] is None and payload["latency_view"] is None and not payload["latency_measured"]
    assert all(t["latency_measured_ms"] is None and t["latency_source"] is None for t in payload["trials"])
    assert "pareto-latency" not in data["figures"]
    assert [tr["meta"] for tr in data["figures"]["pareto-macs"]["data"]] == [
        "dominated", "infeasible", "front", "zoo", "pick"]


@pytest.mark.slow
def test_latency_without_a_record_is_shown_as_unnamed_measurement(tmp_path):
    """Latency timed before training (no table) or an older study: shown, and said to be unnamed."""
    study = make_latency_study(f"sqlite:///{tmp_path / 'old.db'}", record=False)
    data = dashboard_data(study)
    assert data["payload"]["latency"] is None and data["payload"]["latency_view"]["front"]
    assert "device and runtime not recorded" in data["figures"]["pareto-latency"]["layout"]["title"]["text"]


def test_empty_study_payload_has_no_latency(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'e.db'}", heartbeat=False)
    study = optuna.create_study(study_name="empty", storage=storage, directions=["maximize", "minimize", "minimize"])
    study.set_user_attr(StudyKey.LATENCY, {"source": "predicted", "describe": DESCRIBE})
    data = dashboard_data(study)
    assert data["payload"]["latency_view"] is None and "pareto-latency" not in data["figures"]
    assert data["payload"]["latency"]["describe"] == DESCRIBE
    assert write_report(study, tmp_path / "r.html").exists()
