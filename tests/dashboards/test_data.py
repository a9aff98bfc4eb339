import optuna

from igcnas.dashboards import dashboard_data, write_report
from igcnas.dashboards.data import collect
from igcnas.nas.study import open_storage
from igcnas.nas.pareto import pareto_mask, trials_frame


def test_payload_front_is_exactly_the_non_dominated_feasible_trials(synthetic_study):
    _, study = synthetic_study
    payload = collect(study)
    df = trials_frame(study)
    expected = sorted(int(n) for n in df[pareto_mask(df)]["number"])
    assert sorted(payload["front"]) == expected
    assert all(t["feasible"] for t in payload["trials"] if t["front"])
    infeasible = [t["number"] for t in payload["trials"] if not t["feasible"]]
    assert infeasible and not set(infeasible) & set(payload["front"])
    front_trial = next(t for t in payload["trials"] if t["front"])
    assert front_trial["stages"] and "condition" in front_trial["stages"][0] and front_trial["stages"][0]["layers"]
    assert len(payload["history"]["hypervolume"]) == len(payload["history"]["number"]) > 0
    assert payload["history"]["hypervolume"] == sorted(payload["history"]["hypervolume"])  # never decreases
    assert payload["zoo"] and all(z["params"] > 0 for z in payload["zoo"])


def test_figures_hold_the_front_trace(synthetic_study):
    _, study = synthetic_study
    data = dashboard_data(study)
    front = next(tr for tr in data["figures"]["pareto-params"]["data"] if tr["meta"] == "front")
    assert sorted(int(c[0]) for c in front["customdata"]) == sorted(data["payload"]["front"])


def test_empty_study_gives_a_valid_page(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'e.db'}", heartbeat=False)
    study = optuna.create_study(study_name="empty", storage=storage, directions=["maximize", "minimize", "minimize"])
    data = dashboard_data(study)
    assert data["payload"]["n_trials"] == 0 and data["payload"]["front"] == []
    path = write_report(study, tmp_path / "r.html")
    assert path.stat().st_size > 1_000_000  # plotly.js is inline
