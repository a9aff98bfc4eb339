"""optuna-dashboard itself, in Debian's Chromium, on a study that ``igc-nas search`` wrote.

Optuna's own tools must read the study fully: the objectives by name (``study.metric_names``) and
which trials broke the budget. optuna-dashboard reads the list form of the constraints (the
``constraints`` system attribute), which ``budget.record_constraints`` writes beside Optuna 5's
per-key form. A trial over budget is never trained, so it ends PRUNED without objective values:
optuna-dashboard shows it as Pruned (its grey "Infeasible" marking is for trials with values). A
trained trial breaks a constraint when its latency, predicted within the budget before training, is
measured over it afterwards: the search here is given a latency table that underestimates (its
entries divided by 4, as a table measured on a faster machine would), so trained trials end
COMPLETE and infeasible, and optuna-dashboard draws them as Infeasible.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import optuna
import pytest

from igcnas.cli import main
from igcnas.evaluators.latency_build import sample_configs
from igcnas.evaluators.latency_table import LatencyTable
from igcnas.nas.optuna_adapter import CONSTRAINTS_KEY
from igcnas.nas.budget import CONSTRAINT_NAMES, named_constraints
from igcnas.nas.objectives import OBJECTIVES
from igcnas.nas.records import RECORD_ATTR, TrialKey, TrialStatus, record_of
from igcnas.search_space.spec import SearchSpec
from tests.dashboards.test_browser import CHROMIUM, browser, free_port  # noqa: F401 - browser is a fixture

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")  # the console script of this environment
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is None or not DASHBOARD.exists(),
                       reason="optuna-dashboard is not installed in this environment (the test extra has it)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
]
PLOT_READY = "(id) => { const g = document.getElementById(id); return !!(g && g.data && g._fullLayout); }"
TRACES = "(id) => document.getElementById(id).data.map(t => ({name: t.name || '', hover: t.hovertemplate || '', " \
         "y: Array.from(t.y || []), text: Array.from(t.text || [])}))"
SPACE = ["--family", "igcv3", "--width", "8", "--width", "16", "--blocks", "1"]
UNDERESTIMATE = 4.0


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, float]:
    """A tiny real search with a latency budget and a table that underestimates: (storage URL, study, budget)."""
    out = tmp_path_factory.mktemp("odsearch")
    table_path = out / "table.json.gz"
    assert main(["latency-table", "--out", str(table_path), *SPACE, "--calibration", "0", "--holdout", "0"]) == 0
    table = LatencyTable.load(table_path)
    table.entries = {k: v / UNDERESTIMATE for k, v in table.entries.items()}
    table.save(table_path)
    spec = SearchSpec.for_data(in_channels=1, input_size=8, num_classes=10, families=("igcv3",), widths=(8, 16),
                               blocks=(1,))
    predictions = sorted(table.predict(c) for c in sample_configs(spec, 40, seed=0))  # drawn as the search draws
    # About 85% of the space is predicted over it (the seeded draws then meet both kinds); the trained rest
    # runs about 4 times slower than predicted, over the budget unless it is among the very fastest.
    limit = round(predictions[int(0.15 * len(predictions))], 5)
    argv = ["search", "--output-dir", str(out), "--study", "od", "--n-trials", "4", "--epochs", "1",
            "--max-batches-per-epoch", "2", *SPACE, "--sampler", "random", "--no-seed-balanced",
            "--latency-table", str(table_path), "--max-latency-ms", str(limit), "--no-dashboard"]
    assert main(argv) == 0
    return f"sqlite:///{out / 'od' / 'study.db'}", "od", limit


@pytest.fixture
def dashboard(searched: tuple[str, str], tmp_path: Path) -> Iterator[str]:
    """optuna-dashboard on the searched study, on 127.0.0.1 and a free port; always stopped."""
    url = searched[0]
    port = free_port()
    log_path = tmp_path / "optuna-dashboard.log"
    with open(log_path, "w") as out:
        proc = subprocess.Popen([str(DASHBOARD), url, "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/meta", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"optuna-dashboard did not answer:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def open_study_page(page: Any, base: str, study_id: int) -> dict[int, dict[str, Any]]:
    """Load the study's page and wait for its plots; the trials as the page itself received them."""
    def is_study(response: Any) -> bool:
        return urlparse(response.url).path == f"/api/studies/{study_id}" and response.request.method == "GET"

    with page.expect_response(is_study, timeout=30_000) as answer:
        page.goto(f"{base}/dashboard/studies/{study_id}")
    for plot in ("graph-pareto-front", "plot-history", "graph-timeline"):
        page.wait_for_function(PLOT_READY, arg=plot, timeout=30_000)
    return {t["number"]: t for t in answer.value.json()["trials"]}


def numbers_in(trace: dict[str, Any]) -> list[int]:
    """Trial numbers of a Pareto-front trace (optuna-dashboard puts each trial's JSON in its hover text)."""
    return sorted(json.loads(text.replace("<br>", ""))["number"] for text in trace["text"])


@pytest.mark.slow
def test_optuna_dashboard_shows_objective_names_and_infeasible_trials(browser, searched, dashboard):  # noqa: F811
    url, name, limit = searched
    study = optuna.load_study(study_name=name, storage=url)
    names = [o.name for o in OBJECTIVES]
    assert study.metric_names == names
    trials = study.get_trials(deepcopy=False)
    over = sorted(t.number for t in trials if record_of(t.user_attrs).get(TrialKey.STATUS) == TrialStatus.OVER_BUDGET)
    trained = sorted(t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    infeasible = sorted(n for n in trained if record_of(trials[n].user_attrs)[TrialKey.LATENCY_MEASURED_MS] > limit)
    assert over and trained and infeasible, [(t.number, t.state.name, record_of(t.user_attrs).get(TrialKey.STATUS),
                                              record_of(t.user_attrs).get(TrialKey.LATENCY_MEASURED_MS)) for t in trials]
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in trials if t.number in over)
    study_id = study._study_id

    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    served = open_study_page(page, dashboard, study_id)

    # The objective names, as optuna-dashboard shows them: the Pareto front's objective choices and the
    # history plot's axis (the study's user attributes on the same page name them too, so those do not count).
    y_choice = page.locator("fieldset", has=page.locator("legend", has_text="Objective Y:")).get_by_role("combobox")
    assert y_choice.inner_text() == names[1]
    y_choice.click()
    page.get_by_role("option").first.wait_for(timeout=10_000)
    assert page.get_by_role("option").all_inner_texts() == names
    page.keyboard.press("Escape")
    assert page.evaluate("document.getElementById('plot-history')._fullLayout.yaxis.title.text") == names[0]

    # The constraints as the page received them: the list form in the one order, equal to the per-key values.
    # Over budget: the prediction only (never trained); trained: the prediction and the measured latency.
    for t in trials:
        if t.number in over or t.number in trained:
            expected = [named_constraints(t.constraints)[k] for k in CONSTRAINT_NAMES if k in t.constraints]
            assert served[t.number]["constraints"] == expected == t.system_attrs[CONSTRAINTS_KEY]
            assert len(expected) == (2 if t.number in trained else 1)
    assert all(served[n]["constraints"][0] > 0 for n in over)
    assert all(served[n]["constraints"][0] <= 0 for n in trained)  # predicted within the budget
    assert [n for n in trained if served[n]["constraints"][1] > 0] == infeasible  # measured over it

    # Over-budget trials were never trained: no objective values, so optuna-dashboard shows them as Pruned.
    # Trained trials measured over the budget are drawn as infeasible on the Pareto front and the timeline.
    timeline = {tr["name"]: sorted(tr["y"]) for tr in page.evaluate(TRACES, "graph-timeline")}
    assert set(over) <= set(timeline.get("Pruned", [])), timeline
    assert timeline.get("Infeasible") == infeasible, timeline
    assert sorted(timeline.get("Complete", []) + timeline["Infeasible"]) == trained, timeline
    pareto = page.evaluate(TRACES, "graph-pareto-front")
    assert sorted(n for tr in pareto if "Infeasible Trial" in tr["hover"] for n in numbers_in(tr)) == infeasible
    page.locator("#graph-timeline .legendtext", has_text="Infeasible").wait_for(timeout=10_000)

    # The trial list shows an over-budget trial with why it was not trained: its record (one user attribute,
    # shown as JSON) says so.
    page.goto(f"{dashboard}/dashboard/studies/{study_id}/trials?numbers={over[0]}")
    page.get_by_text(f"Trial {over[0]} (trial_id=").wait_for(timeout=30_000)
    page.get_by_text("User Attributes", exact=True).wait_for(timeout=10_000)
    body = page.inner_text("body")
    assert re.search(rf'{RECORD_ATTR} {{.*"{TrialKey.STATUS}":\s*"{TrialStatus.OVER_BUDGET}"', body), body[-2000:]
    assert "Pruned" in body
    assert errors == []
    page.close()
