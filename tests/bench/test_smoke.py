"""Smoke runs of every benchmark in bench/: each entry point end to end, every arm, on tiny sizes.

A benchmark is run by hand, rarely, and often by someone other than its author; an arm broken by a change
elsewhere (an import, a signature, a sampler that no longer pickles) would otherwise be found only by the
next person's hour-long run. Each test runs the script as its users do (its own process, from the
repository root, ``--json`` into ``tmp_path``) on sizes small enough for CI, and checks real outcomes,
not only the exit code: every arm is in the figures and produced something (trials, points, rates).
The figures themselves mean nothing at these sizes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"  # on sys.path too (pyproject's pythonpath): its modules are imported below

CHROMIUM = "/usr/bin/chromium"
PG_URL = os.environ.get("IGCNAS_TEST_POSTGRES", "postgresql+psycopg2://igcnas:igcnas@127.0.0.1:5432/igcnas")
# search_efficiency: Ray spends ~10 s of its run's wall-clock budget starting (ray.init, worker processes)
# and its first trial reports after ~14 s on the 2-core machine, so it gets a budget of its own; at the
# 8 s the other methods need, it ends with no trial at all.
SEARCH_RUNS = {"without_ray": (("random", "nsga2_plain", "igcnas", "igcnas_random"), 8.0),
               "ray_asha": (("ray_asha",), 24.0)}


def run_bench(script: str, *args: str | Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python bench/<script> args`` from the repository root; fails the test with the output's tail on a
    non-zero exit or after ``timeout`` seconds.

    The benchmark runs in a session of its own, so that on a timeout (or the test's own timeout) its whole
    process group goes (worker processes, Ray, a browser), not only the script.
    """
    cmd = [sys.executable, str(BENCH / script), *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{script} ran past {timeout:g} s\n--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-5000:]}")
    finally:
        if proc.poll() is None:  # the test itself timed out (pytest-timeout) while waiting
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, (f"{' '.join(cmd[1:])} exited {proc.returncode}\n--- stdout ---\n{out[-3000:]}\n"
                                  f"--- stderr ---\n{err[-5000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def read_json(path: Path) -> dict[str, Any]:
    assert path.exists(), f"the benchmark wrote no {path.name}"
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------- benchmarks


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_dashboard_render(tmp_path):
    out = tmp_path / "dashboard.json"
    run_bench("dashboard_render.py", "--trials", "50", "--repeats", "1", "--json", out, timeout=150)
    result = read_json(out)
    assert result["trials"] == 50 and result["front_size"] >= 1
    for step in ("dashboard_data", "browser_first_render", "browser_draw", "browser_refresh", "browser_budget_change"):
        assert result[step]["median_s"] > 0, step
    assert result["report_mb"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_latency_prediction(tmp_path):
    """``--quick`` (two families at one width, 12 validation networks, one run) for both spaces on every runtime
    installed here."""
    runtimes = ["torch"]
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass  # the onnx extra is not installed: the torch runtime only
    else:
        runtimes.append("onnxruntime")
    out = tmp_path / "latency.json"
    run_bench("latency_prediction.py", "--quick", "--runtimes", ",".join(runtimes), "--json", out, timeout=270)
    result = read_json(out)
    assert list(result["summary"]) == ["digits", "cifar32"]
    for name, by_runtime in result["runs"][0]["spaces"].items():
        assert list(by_runtime) == runtimes
        for runtime, r in by_runtime.items():
            assert set(r["predictors"]) == {"table", "table_plain_sum", "macs_linear"}, (name, runtime)
            assert len(r["rows"]) == 12 and r["self_reported"]["networks"] > 0, (name, runtime)
            assert r["parts_timed"] > 0 and all(row["measured_ms"] > 0 and row["table"] > 0 for row in r["rows"])
            assert result["summary"][name][runtime]["share_within_10pct"] == [r["predictors"]["table"][
                "share_within_10pct"]]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_make_table(tmp_path):
    """Resume, train and finalize in ``--out-dir``, never in bench/tables.

    The table needs every network of its space before it is written, so the partial file starts as the
    committed table less one network: the run must train exactly that one (resume), then write the whole
    table. ``--finalize`` on the committed rows alone must rewrite the committed table byte for byte.
    """
    from igc_table import TABLE_PATH, TABLES_DIR, read_rows

    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in TABLES_DIR.iterdir()}
    committed = gzip.decompress(TABLE_PATH.read_bytes()).decode("utf-8").splitlines(keepends=True)
    ids = [json.loads(line)["arch_id"] for line in committed]
    missing = len(committed) // 2
    partial = tmp_path / "igc_digits.partial.jsonl"
    partial.write_text("".join(committed[:missing] + committed[missing + 1:]))

    done = run_bench("make_table.py", "--out-dir", tmp_path, "--limit", "1", timeout=150)
    assert f"{len(ids) - 1} done, 1 to train" in done.stdout
    rows = read_rows(partial)
    assert len(rows) == len(ids) and {r.arch_id for r in rows} == set(ids)
    retrained = next(r for r in rows if r.arch_id == ids[missing])
    assert set(retrained.curves) == {0, 1} and all(len(c) == 4 for c in retrained.curves.values())
    assert [r.arch_id for r in read_rows(tmp_path / TABLE_PATH.name)] == ids  # sorted by arch_id, all of them
    assert (tmp_path / "README.md").exists()

    partial.write_text("".join(committed))
    run_bench("make_table.py", "--out-dir", tmp_path, "--finalize", timeout=60)
    written = hashlib.sha256((tmp_path / TABLE_PATH.name).read_bytes()).hexdigest()
    assert written == hashlib.sha256(TABLE_PATH.read_bytes()).hexdigest()
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in TABLES_DIR.iterdir()}
    assert after == before, "a smoke run touched bench/tables"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_make_long_table_and_fidelity(tmp_path):
    """The ground truth's generation (resumable, in ``--out-dir``) and its pilot, then bench/fidelity.py on it.

    Four networks with two-epoch "long" trainings: fidelity.py reads a partial ground truth, says so, and
    writes every figure but the pick regret (which needs every network of the table).
    """
    from igc_table import TABLES_DIR

    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in TABLES_DIR.iterdir()}
    first = run_bench("make_long_table.py", "--out-dir", tmp_path, "--limit", "3", "--epochs", "2", timeout=200)
    assert "0 done, " in first.stdout
    again = run_bench("make_long_table.py", "--out-dir", tmp_path, "--limit", "1", "--epochs", "2", timeout=120)
    assert "3 done, " in again.stdout  # resumed: the three rows are kept, one more trained
    rows = [json.loads(line) for line in (tmp_path / "igc_digits_long.partial.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and len({r["arch_id"] for r in rows}) == 4
    for row in rows:
        for record in row["seeds"].values():
            assert len(record["search_curve"]) == len(record["search_recalibrated"]) == len(record["search_loss"]) == 4
            assert len(record["long_curve"]) == len(record["long_loss"]) == 2
    pilot = tmp_path / "pilot.json"
    run_bench("make_long_table.py", "--pilot", "--lengths", "1", "2", "--per-family", "1", "--json", pilot,
              timeout=200)
    chosen = read_json(pilot)
    assert chosen["chosen_length"] in (1, 2) and len(chosen["networks"]) >= 6
    out = tmp_path / "fidelity.json"
    result = run_bench("fidelity.py", "--long", tmp_path / "igc_digits_long.partial.jsonl", "--json", out,
                       timeout=120)
    assert "PARTIAL" in result.stdout
    figures = read_json(out)
    assert figures["networks"] == 4 and figures["median_pick_regret"] is None
    assert {"acc@2", "acc@2+bn", "-loss@4"} <= set(figures["rank_correlation"])
    stopped = figures["front_stopped_share"]
    assert "rung 2, acc@2" in stopped
    aware = stopped["noise_aware_front"]
    # Over the seed noise the front is still a front: at least one network, at most the table's.
    assert 1 <= aware["expected_size"] <= aware["networks_ever_on_it"] <= 4
    assert all(0.0 <= v <= 1.0 for k, entry in stopped.items() if k.startswith("rung")
               for v in [entry["noise_aware"], *entry["noise_aware_per_family"].values()])
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in TABLES_DIR.iterdir()}
    assert after == before, "a smoke run touched bench/tables"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fidelity_replays_on_a_complete_ground_truth(tmp_path):
    """The pick-regret replays need every network: a stand-in ground truth made from the committed 4-epoch
    table (long accuracy = the 4-epoch one, plus a little) runs them, two replays per setting."""
    from fidelity import SETTINGS
    from igc_table import load_table

    lines = []
    for row in load_table().values():
        seeds = {str(s): {"search_curve": c, "search_recalibrated": c, "search_loss": [1.0, 0.8, 0.6, 0.5],
                          "long_curve": [min(1.0, c[-1] + 0.01 * s)], "long_loss": [0.1]} for s, c in row.curves.items()}
        lines.append(json.dumps({"arch_id": row.arch_id, "family": row.family, "width": row.width,
                                 "params": row.params, "macs": row.macs, "epochs": 1, "seeds": seeds}))
    truth = tmp_path / "long.jsonl"
    truth.write_text("\n".join(lines) + "\n")
    out = tmp_path / "fidelity.json"
    run_bench("fidelity.py", "--long", truth, "--seeds", "2", "--budget-networks", "8", "--json", out, timeout=280)
    regret = read_json(out)["median_pick_regret"]
    assert len(regret["budgets_params"]) == 5
    for label in SETTINGS:
        for mode in ("no_refine", "refine"):
            per_budget = regret[label][mode]["per_budget"]
            assert len(per_budget) == 5 and all(v >= 0 for v in per_budget.values()), (label, mode)
        assert "long_fidelity_fraction_to_reach_random" in regret[label]
    verdict = read_json(out)["targets"]
    assert set(verdict) == set(SETTINGS) and next(iter(SETTINGS)).startswith("defaults (rung 3")
    for label, checks in verdict.items():
        assert checks["all"] == all(checks[k] for k in ("regret_with_refine", "refine_no_worse", "rung_front_share",
                                                         "reach_half_budget"))
        if "no early stopping" in label:
            assert checks["rung_front_share"] and checks["worst_family_stopped"] == 0.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sampler_comparison(tmp_path):
    """Every arm and every early-stopping schedule, one seed, a budget of 8 networks."""
    from sampler_comparison import ARMS, SCHEDULES

    out = tmp_path / "samplers.json"
    run_bench("sampler_comparison.py", "--seeds", "1", "--budget-networks", "8", "--json", out, timeout=150)
    result = read_json(out)
    assert set(result["median_hv"]) == set(ARMS)
    for arm in ARMS:
        assert result["trials"][arm]["complete"] >= 1, arm
        assert result["median_hv"][arm]["100%"] > 0, arm
    assert set(result["schedules"]["median_hv"]) == set(SCHEDULES)
    assert "difference_evolution_minus_random_at_50%" in result
    assert len(result["early_stopping"]["epochs"]) == 4


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_scale(tmp_path):
    """(a) two study sizes, (b) 1 and 2 workers on every storage available here, (c) a two-node loopback
    Ray cluster running 2 trials at once; short trials and windows."""
    from igcnas.nas.study import database_reachable

    storages = ["sqlite", "journal"] + (["postgresql"] if database_reachable(PG_URL) else [])
    out = tmp_path / "scale.json"
    run_bench("scale.py", "--quick", "--sizes", "0,50", "--trials", "2", "--window", "1", "--trial-seconds", "0.3",
              "--storages", ",".join(storages), "--ray-concurrency", "2", "--ray-trials-per-slot", "1",
              "--json", out, timeout=210)
    result = read_json(out)
    assert {(r["size"], r["mode"]) for r in result["size"]} == {(0, "incremental"), (50, "incremental")}
    assert "incremental_50_over_0" in result["size_ratios"]
    assert all(r["trials"] == 2 and r["per_trial_overhead_ms"] > 0 for r in result["size"])
    assert result["workers_skipped"] == {}
    assert {(r["storage"], r["workers"]) for r in result["workers"]} == {(s, w) for s in storages for w in (1, 2)}
    for row in result["workers"]:
        assert row["errors"] == [] and row["trials_per_s"] > 0, row
    assert "skipped" not in result["ray"], result["ray"]
    [ray_row] = result["ray"]["rows"]
    assert ray_row["concurrency"] == 2 and ray_row["trials"] >= 3 and ray_row["trials_per_s"] > 0


def test_search_efficiency_smoke_covers_every_method():
    """The two smoke runs below between them run every method the benchmark has."""
    from search_efficiency import METHODS

    assert sorted(m for methods, _ in SEARCH_RUNS.values() for m in methods) == sorted(METHODS)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("run", list(SEARCH_RUNS))
def test_search_efficiency(tmp_path, run):
    """digits, one seed; every method must have completed at least one trial (a method whose trials all
    fail inside Ray still exits 0 with no points, so the exit code alone would not show it)."""
    methods, budget = SEARCH_RUNS[run]
    out = tmp_path / "search.json"
    run_bench("search_efficiency.py", "--budget", str(budget), "--seeds", "0", "--datasets", "digits",
              "--methods", *methods, "--json", out, "--html", tmp_path / "search.html",
              timeout=210)
    result = read_json(out)
    digits = result["datasets"]["digits"]
    assert list(digits["methods"]) == list(methods)
    for method, m in digits["methods"].items():
        assert m["completed_trials"][0] >= 1, f"{method} completed no trial in {budget:g} s"
        # the hypervolume is positive exactly when a trial with some accuracy finished within the budget (on a
        # slow machine the one trial a method completes may finish after it)
        assert all(b >= a >= 0 for a, b in zip(m["median"], m["median"][1:])), (method, m["median"])
        assert (m["median"][-1] > 0) == (m["completed_within_budget"][0] >= 1), (method, m)
    if run == "without_ray":
        assert "optimiser_share_median_hv" in result and "time_fraction_to_random_final_hv" in result
    assert (tmp_path / "search.html").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_training_throughput(tmp_path):
    """The two headline networks (``--quick``), every part (trainer vs bare loop, reference vs fast training
    with the path each chose, inference at batch 1 and 8), one round of one step at batch 8. Compiling is left
    out (a minute per network here); tests/models/test_training_path.py compiles for real."""
    from training_throughput import TRAINER_NETWORKS, TRAIN_NETWORKS

    out = tmp_path / "throughput.json"
    run_bench("training_throughput.py", "--quick", "--repeats", "1", "--rounds", "1", "--steps", "1", "--batch", "8",
              "--trainer-steps", "2", "--infer-batch", "8", "--compile-rounds", "0", "--json", out, timeout=210)
    result = read_json(out)
    headline = TRAIN_NETWORKS[:2]
    assert set(result["trainer_vs_bare_loop"]["networks"]) == set(TRAINER_NETWORKS)
    for name, row in result["trainer_vs_bare_loop"]["networks"].items():
        assert row["images_per_second"] > 0 and min(row["bare_loop"]) > 0, name
    assert set(result["train"]) == set(headline)
    for name, row in result["train"].items():
        assert row["reference"]["median"] > 0 and row["fast"]["median"] > 0, name
        decision = row["fast_decisions"][0]
        assert row["fast_path"] == [decision["path"]] and set(decision["step_ms"]) >= {"plain"}, name
    assert set(result["infer"]) == set(headline)
    for name, by_batch in result["infer"].items():
        assert set(by_batch) == {"1", "8"}, name
        assert all(b["reference"] > 0 and b["fast"] > 0 for b in by_batch.values()), name


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_latency_noise(tmp_path):
    """Two fresh processes, two networks, the old timer beside the one timer (one at a time and in turns)."""
    out = tmp_path / "noise.json"
    variants = "min_3ms,median_blocks,gated_min,gated_turns_min"
    run_bench("latency_noise.py", "--processes", "2", "--gap", "0", "--n", "2", "--run-time", "0.05",
              "--variants", variants, "--json", out, timeout=200)
    result = read_json(out)
    assert list(result["variants"]) == variants.split(",")
    for variant, r in result["variants"].items():
        assert len(r["per_network_ms"]) == 2 and all(len(v) == 2 and min(v) > 0 for v in r["per_network_ms"]), variant


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_optuna_floor(tmp_path):
    """Optuna's own loop: each suggested gene costs its trial a SELECT and an INSERT, whatever the search does."""
    from igcnas.nas.gene_suggestions import gene_distributions
    from igcnas.nas.study import database_reachable
    from igcnas.search_space.genome import genome_for
    from igcnas.search_space.spec import SearchSpec

    if not database_reachable(PG_URL):
        pytest.skip("no PostgreSQL here (.ci/postgres-up starts one)")
    out = tmp_path / "floor.json"
    run_bench("optuna_floor.py", "--trials", "3", "--json", out, timeout=100)
    figures = json.loads(out.read_text())
    genes = len(gene_distributions(genome_for(SearchSpec.for_data(in_channels=1, input_size=8, num_classes=10))))
    assert figures["nothing"] > 20 and figures["genes_only"] == figures["nothing"] + 2 * genes, figures
