"""The dashboard in a real headless Chromium (Debian's chromium, driven by Playwright)."""

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from igcnas.cli import main
from igcnas.nas.pareto import pareto_mask, trials_frame
from igcnas.nas.pick import NothingFits, choose
from igcnas.nas.budget import Budget

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                "(.ci/run installs it)")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(synthetic_study):
    url, _ = synthetic_study
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "igcnas.cli", "dashboard", "--storage", url, "--port", str(port),
                             "--refresh", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/", url
    proc.terminate()
    proc.wait(timeout=10)


def front_numbers(page, figure: str) -> list[int]:
    return sorted(page.evaluate(
        f"document.getElementById('{figure}').data.find(t => t.meta === 'front').customdata.map(c => c[0])"))


@pytest.mark.slow
def test_live_dashboard_front_budget_pick_and_screenshot(browser, live_server, synthetic_study, artifacts_dir,
                                                          capsys):
    page_url, storage_url = live_server
    _, study = synthetic_study
    df = trials_frame(study)
    expected_front = sorted(int(n) for n in df[pareto_mask(df)]["number"])
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_url)
    page.wait_for_selector("body[data-rendered]", timeout=30000)
    assert front_numbers(page, "pareto-params") == expected_front
    assert front_numbers(page, "pareto-macs") == expected_front
    # No budget: the most accurate trial overall is highlighted.
    assert page.get_attribute("#pick", "data-trial") == str(int(choose(df, Budget())["number"]))
    for params, macs in (("3k", None), ("1500", "40k"), (None, "25k")):
        page.fill("#max-params", params or "")
        page.fill("#max-macs", macs or "")
        page.dispatch_event("#max-macs", "change")
        budget = Budget(max_params=None if params is None else float(params.replace("k", "e3")),
                        max_macs=None if macs is None else float(macs.replace("k", "e3")))
        expected = str(int(choose(df, budget)["number"]))
        assert page.get_attribute("#pick", "data-trial") == expected
        star = page.evaluate("document.getElementById('pareto-params').data.find(t => t.meta === 'pick')"
                             ".customdata[0][0]")
        assert str(star) == expected
        argv = ["pick", "--storage", storage_url, "--study", "dash"]
        argv += ["--max-params", params] if params else []
        argv += ["--max-macs", macs] if macs else []
        assert main(argv) == 0
        assert capsys.readouterr()[0].startswith(f"picked trial {expected}:")
    # Only the current budget is shaded: the params budget was cleared, the MACs one is set.
    shaded = "(id) => (document.getElementById(id).layout.shapes || []).filter(s => s.name === 'over-budget').length"
    assert page.evaluate(shaded, "pareto-params") == 0
    assert page.evaluate(shaded, "pareto-macs") == 1
    page.click("#front-table tbody tr >> nth=0")
    page.wait_for_function("document.getElementById('details-title').textContent.startsWith('Trial')")
    assert page.locator("#drawing svg rect").count() > 0
    assert "path" in page.text_content("#conditions")
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)
    assert (artifacts_dir / "dashboard.png").stat().st_size > 10_000
    assert errors == []


@pytest.mark.slow
def test_static_report_opens_offline_and_shows_the_same_front(browser, synthetic_study, tmp_path):
    url, study = synthetic_study
    report = tmp_path / "report.html"
    assert main(["dashboard", "--storage", url, "--html", str(report)]) == 0
    df = trials_frame(study)
    expected_front = sorted(int(n) for n in df[pareto_mask(df)]["number"])
    context = browser.new_context(offline=True)
    requests = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-rendered]", timeout=30000)
    assert front_numbers(page, "pareto-params") == expected_front
    assert all(r.startswith("file:") or r.startswith("data:") for r in requests)
    # No latency in this study: no latency plot, budget or column (the page as it was before latency).
    assert not page.is_visible("#pareto-latency") and not page.is_visible("#latency-control")
    assert not page.is_visible("#measured-col")
    context.close()


@pytest.mark.slow
def test_latency_view_beside_macs_and_budget_names_the_runtime(browser, tmp_path, artifacts_dir):
    from tests.dashboards.test_latency_view import DESCRIBE, make_latency_study

    url = f"sqlite:///{tmp_path / 'lat.db'}"
    study = make_latency_study(url)
    report = tmp_path / "lat.html"
    assert main(["dashboard", "--storage", url, "--study", "lat", "--html", str(report)]) == 0
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-rendered]", timeout=30000)
    view = page.evaluate("window.igcnas.payload.latency_view")
    assert front_numbers(page, "pareto-latency") == view["front"]
    macs, latency = page.locator("#pareto-macs").bounding_box(), page.locator("#pareto-latency").bounding_box()
    assert abs(macs["y"] - latency["y"]) < 1 and latency["x"] >= macs["x"] + macs["width"]  # same row, beside
    assert DESCRIBE in page.text_content("#pareto-latency .gtitle")
    assert "latency (ms) on torch 2.13.0+cpu, 1 thread(s), batch 1" in page.text_content("#latency-label")
    assert page.is_visible("#latency-control") and page.is_visible("#measured-col")
    rings = "(id) => document.getElementById(id).data.filter(t => t.meta === 'macs-only').length"
    assert page.evaluate(rings, "pareto-latency") == 1 and page.evaluate(rings, "pareto-macs") == 1
    # A latency budget: the star in every plot is igc-nas pick's choice, and the latency plot is shaded.
    page.fill("#max-latency", "0.7")
    page.dispatch_event("#max-latency", "change")
    expected = int(choose(trials_frame(study), Budget(max_latency_ms=0.7))["number"])
    assert page.get_attribute("#pick", "data-trial") == str(expected)
    star = "(id) => document.getElementById(id).data.find(t => t.meta === 'pick').customdata[0][0]"
    assert page.evaluate(star, "pareto-latency") == expected == page.evaluate(star, "pareto-macs")
    shaded = "(id) => (document.getElementById(id).layout.shapes || []).filter(s => s.name === 'over-budget').length"
    assert page.evaluate(shaded, "pareto-latency") == 1
    page.screenshot(path=str(artifacts_dir / "dashboard_latency.png"), full_page=True)
    assert errors == []


@pytest.mark.slow
def test_live_page_refreshes_while_the_study_grows(browser, live_server, synthetic_study):
    import optuna

    page_url, _ = live_server
    _, study = synthetic_study
    page = browser.new_page()
    page.goto(page_url)
    page.wait_for_selector("body[data-rendered]", timeout=30000)
    before = page.evaluate("window.igcnas.payload.n_trials")
    template = study.trials[0]
    study.add_trial(optuna.trial.create_trial(values=[0.9999, 1.0, 1.0], user_attrs=dict(template.user_attrs)))
    page.wait_for_function(f"window.igcnas.payload.n_trials === {before + 1}", timeout=20000)
    assert page.evaluate("window.igcnas.pick") == len(study.trials) - 1  # the new unbeatable trial


@pytest.mark.slow
def test_empty_study_page_and_missing_study_and_bad_storage(browser, tmp_path, capsys):
    import optuna

    from igcnas.nas.study import open_storage

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="empty", storage=open_storage(url, heartbeat=False),
                        directions=["maximize", "minimize", "minimize"])
    report = tmp_path / "empty.html"
    assert main(["dashboard", "--storage", url, "--study", "empty", "--html", str(report)]) == 0
    page = browser.new_page()
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-rendered]", timeout=30000)
    assert "No completed trials yet" in page.text_content("#summary")
    assert main(["dashboard", "--storage", url, "--study", "nope"]) == 2
    assert "study 'nope' does not exist" in capsys.readouterr()[1]
    assert main(["dashboard", "--storage", "postgresql+psycopg2://u@127.0.0.1:1/x", "--study", "s"]) == 2
    err = capsys.readouterr()[1]
    assert "cannot be opened" in err and "Traceback" not in err


@pytest.mark.slow
def test_binding_elsewhere_is_announced(tmp_path, synthetic_study):
    url, _ = synthetic_study
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "igcnas.cli", "dashboard", "--storage", url, "--host", "0.0.0.0",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Read stderr until the warning (or the process ends); a watchdog stops the server after 90 s at most.
    watchdog = threading.Timer(90, proc.terminate)
    watchdog.start()
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "warning: serving on" in line:
                break
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.communicate(timeout=30)
    assert any("warning: serving on 0.0.0.0" in line for line in seen), seen


@pytest.mark.slow
def test_the_page_admits_a_trial_exactly_on_every_budget_as_pick_does(browser, tmp_path):
    """Budgets typed as one trial's own params, MACs and latency: the page's pick is igc-nas pick's (inclusive)."""
    from tests.dashboards.test_latency_view import make_latency_study

    url = f"sqlite:///{tmp_path / 'edge.db'}"
    study = make_latency_study(url)
    df = trials_frame(study)
    front = df[pareto_mask(df, with_latency=True)].sort_values("val_accuracy", ascending=False)
    report = tmp_path / "edge.html"
    assert main(["dashboard", "--storage", url, "--study", "lat", "--html", str(report)]) == 0
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-rendered]", timeout=30000)
    for row in front.head(3).itertuples():  # the most accurate front trials: each one is the pick on its own figures
        budget = Budget(max_params=float(row.params), max_macs=float(row.macs), max_latency_ms=float(row.latency_ms))
        assert int(choose(df, budget)["number"]) == row.number
        page.fill("#max-params", str(int(row.params)))
        page.fill("#max-macs", str(int(row.macs)))
        page.fill("#max-latency", repr(float(row.latency_ms)))
        page.dispatch_event("#max-latency", "change")
        assert page.get_attribute("#pick", "data-trial") == str(row.number)
        # One MAC less: that trial is over, and the page agrees with pick on what comes next (or on nothing).
        page.fill("#max-macs", str(int(row.macs) - 1))
        page.dispatch_event("#max-macs", "change")
        tighter = Budget(max_params=budget.max_params, max_macs=budget.max_macs - 1, max_latency_ms=budget.max_latency_ms)
        try:
            expected = str(int(choose(df, tighter)["number"]))
        except NothingFits:
            expected = ""
        assert expected != str(row.number) and page.get_attribute("#pick", "data-trial") == expected


@pytest.mark.slow
def test_a_refined_trial_shows_both_figures_in_the_table_and_the_pick(browser, synthetic_study, tmp_path):
    """After igc-nas refine the page compares at the highest fidelity, as pick does, and shows the search's
    figure beside the refined one (results written as refine writes them: one study attribute per seed)."""
    from igcnas.nas.records import StudyKey, refine_key

    url, study = synthetic_study
    df = trials_frame(study)
    best = int(df[pareto_mask(df)].sort_values("val_accuracy", ascending=False)["number"].iloc[0])
    for seed, accuracy in ((0, 0.999), (1, 0.997)):
        study.set_user_attr(refine_key(StudyKey.REFINED, best, 30, seed), {"val_accuracy": accuracy, "seed": seed})
    report = tmp_path / "report.html"
    assert main(["dashboard", "--storage", url, "--html", str(report)]) == 0
    page = browser.new_page()
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-rendered]", timeout=30000)
    searched = float(df.set_index("number").at[best, "val_accuracy"])
    row = page.inner_text(f"#front-table tr[data-trial='{best}']")
    assert "0.9980" in row and f"refined; search {searched:.4f}" in row
    pick = page.inner_text("#pick")
    assert f"trial {best} " in pick and "(refined, 30 epochs, mean of 2 seeds (sd 0.0014))" in pick
    page.close()
