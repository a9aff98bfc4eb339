"""optuna-dashboard itself, in Debian's Chromium, on a study that ``igc-nas search`` wrote.

Optuna's own tools must read the study fully: the objectives by name (``study.metric_names``) and
which trials broke the budget. optuna-dashboard reads the list form of the constraints (the
``constraints`` system attribute), which ``budget.record_constraints`` writes beside Optuna 5's
per-key form. A trial over budget is never trained, so it ends PRUNED without objective values:
optuna-dashboard shows it as Pruned (its grey "Infeasible" marking is for trials with values). A
trial told COMPLETE with a broken constraint, recorded by the same helper, shows as Infeasible.
"""

from __future__ import annotations

import importlib.util
import json
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
from igcnas.nas.budget import CONSTRAINT_NAMES, CONSTRAINTS_LIST_KEY, Budget, named_constraints, record_constraints
from igcnas.nas.objectives import OBJECTIVES
from igcnas.nas.records import TrialKey, TrialStatus
from tests.dashboards.test_browser import CHROMIUM, browser, free_port  # noqa: F401 - browser is a fixture

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")  # the console script of this environment
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is None or not DASHBOARD.exists(),
                       reason="optuna-dashboard is not installed in this environment (the test extra has it)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
]
BUDGET = Budget(max_params=2000, max_macs=30_000)  # some of the tiny digits networks break it, some do not
PLOT_READY = "(id) => { const g = document.getElementById(id); return !!(g && g.data && g._fullLayout); }"
TRACES = "(id) => document.getElementById(id).data.map(t => ({name: t.name || '', hover: t.hovertemplate || '', " \
         "y: Array.from(t.y || []), text: Array.from(t.text || [])}))"


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A tiny real search with a budget; the storage URL and the study name."""
    out = tmp_path_factory.mktemp("odsearch")
    argv = ["search", "--output-dir", str(out), "--study", "od", "--n-trials", "2", "--epochs", "1",
            "--max-batches-per-epoch", "2", "--width", "8", "--width", "16", "--blocks", "1", "--sampler", "random",
            "--max-params", str(int(BUDGET.max_params)), "--max-macs", str(int(BUDGET.max_macs)), "--no-dashboard"]
    assert main(argv) == 0
    return f"sqlite:///{out / 'od' / 'study.db'}", "od"


@pytest.fixture
def dashboard(searched: tuple[str, str], tmp_path: Path) -> Iterator[str]:
    """optuna-dashboard on the searched study, on 127.0.0.1 and a free port; always stopped."""
    url, _ = searched
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


def test_optuna_dashboard_shows_objective_names_and_over_budget_trials(browser, searched, dashboard):  # noqa: F811
    url, name = searched
    study = optuna.load_study(study_name=name, storage=url)
    names = [o.name for o in OBJECTIVES]
    assert study.metric_names == names
    trials = study.get_trials(deepcopy=False)
    over = sorted(t.number for t in trials if t.user_attrs.get(TrialKey.STATUS) == TrialStatus.OVER_BUDGET)
    trained = sorted(t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert over and trained, [(t.number, t.state.name, t.user_attrs.get(TrialKey.STATUS)) for t in trials]
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

    # The constraints as the page received them: the list form in the one order, equal to the per-key values;
    # each over-budget trial breaks one, each trained trial breaks none.
    for t in trials:
        if t.number in over or t.number in trained:
            expected = [named_constraints(t.constraints)[k] for k in CONSTRAINT_NAMES if k in t.constraints]
            assert served[t.number]["constraints"] == expected == t.system_attrs[CONSTRAINTS_LIST_KEY]
            assert len(expected) == 2  # max_params and max_macs were both given
    assert all(max(served[n]["constraints"]) > 0 for n in over)
    assert all(max(served[n]["constraints"]) <= 0 for n in trained)

    # Over-budget trials were never trained: no objective values, so optuna-dashboard shows them as Pruned
    # (the timeline), and none of the trained trials on the Pareto front is infeasible.
    timeline = {tr["name"]: sorted(tr["y"]) for tr in page.evaluate(TRACES, "graph-timeline")}
    assert set(over) <= set(timeline.get("Pruned", [])), timeline
    assert sorted(timeline.get("Complete", [])) == trained and "Infeasible" not in timeline, timeline
    pareto = page.evaluate(TRACES, "graph-pareto-front")
    assert [numbers_in(tr) for tr in pareto if "Infeasible Trial" in tr["hover"]] == [[]]

    # The trial list shows an over-budget trial with why it was not trained.
    page.goto(f"{dashboard}/dashboard/studies/{study_id}/trials?numbers={over[0]}")
    detail = page.get_by_text(f"Trial {over[0]} (trial_id=")
    detail.wait_for(timeout=30_000)
    page.get_by_text(f"{TrialKey.STATUS} {TrialStatus.OVER_BUDGET}", exact=True).wait_for(timeout=10_000)
    assert "Pruned" in page.inner_text("body")

    # A trial told COMPLETE with a broken constraint, recorded by the same helper (what a constraint known only
    # after training gives), is drawn grey as an infeasible trial on the Pareto front and the timeline.
    ask = study.ask()
    record_constraints(ask, {"max_params": 0.5, "max_macs": -0.1})
    study.tell(ask, [0.2, 3000.0, 27_000.0])
    open_study_page(page, dashboard, study_id)
    pareto = page.evaluate(TRACES, "graph-pareto-front")
    assert [numbers_in(tr) for tr in pareto if "Infeasible Trial" in tr["hover"]] == [[ask.number]]
    timeline = {tr["name"]: sorted(tr["y"]) for tr in page.evaluate(TRACES, "graph-timeline")}
    assert timeline.get("Infeasible") == [ask.number] and sorted(timeline["Complete"]) == trained, timeline
    page.locator("#graph-timeline .legendtext", has_text="Infeasible").wait_for(timeout=10_000)
    assert errors == []
    page.close()
