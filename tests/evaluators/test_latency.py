"""Latency tables: parts that add up to the network, a space covered, fingerprints refused, searches predicted.

No assertion here is about how fast anything runs (that is bench/latency_prediction.py's job): the tests
check that the parts are the network, that the table holds what the space needs, that predictions follow
the table, and that budgets and fingerprints are enforced.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import time

import optuna
import pytest
import torch

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.errors import BadInput
from igcnas.evaluators.latency_build import build_table, sample_configs, space_configs
from igcnas.evaluators.latency_fit import choose_calibration, require_share
from igcnas.evaluators.latency_parts import network_parts, part_keys
from igcnas.evaluators.latency_runtime import Fingerprint
from igcnas.evaluators.latency_table import TABLE_FORMAT, LatencyTable
from igcnas.models import build_model
from igcnas.nas.options import SearchOptions
from igcnas.nas.orchestrator import run_search
from igcnas.search_space.design_space import DesignSpace
from igcnas.search_space.families import FAMILIES
from igcnas.search_space.genome import genome_for
from igcnas.search_space.spec import SearchSpec

DIGITS = dict(in_channels=1, input_size=8, num_classes=10)
SMALL = SearchSpec.for_data(**DIGITS, families=("igcv3", "xception", "igcv2"), widths=(8,), blocks=(1,))


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    """A torch table of the small space (a few seconds), saved to a file."""
    table = build_table(SMALL, runtime="torch", threads=1, batch=1, calibration=5, holdout=5, seed=0)
    path = tmp_path_factory.mktemp("latency") / "table.json.gz"
    table.save(path)
    return path


@pytest.mark.parametrize("family", FAMILIES)
def test_parts_run_in_sequence_are_the_network(family):
    spec = SearchSpec.for_data(**DIGITS, families=(family,), structured=True)
    genome = genome_for(spec)
    rng = random.Random(3)
    for _ in range(3):
        config = genome.decode(genome.random_params(rng))
        model = build_model(config, seed=1, form="deployed").eval()
        parts = network_parts(config, model)
        assert [p.key for p in parts] == [k.key for k in part_keys(config)]
        x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = x
            for part in parts:
                assert tuple(out.shape[1:]) == part.input_shape
                out = part.module(out)
            assert torch.allclose(out, model(x), atol=1e-5)


@pytest.mark.parametrize("structured", [False, True])
def test_the_covering_networks_hold_every_part_of_the_space(structured):
    spec = SearchSpec.for_data(**DIGITS, structured=structured, widths=(8, 16) if structured else None)
    covered = {k.key for c in space_configs(spec) for k in part_keys(c)}
    genome = genome_for(spec)
    rng = random.Random(0)
    samples = [genome.decode(genome.random_params(rng)) for _ in range(150)]
    if not structured:
        samples += DesignSpace(spec).sample(150, seed=1)
    missing = [k.label for c in samples for k in part_keys(c) if k.key not in covered]
    assert not missing


def test_covering_with_a_budget_drops_only_parts_no_fitting_network_uses():
    spec = SearchSpec.for_data(**DIGITS, families=("igcv2",), widths=(16, 32))
    limit = 20_000

    def fits(config):
        from igcnas.search_space.costs import closed_form_costs

        return closed_form_costs(config).params <= limit

    all_networks, within = space_configs(spec), space_configs(spec, fits=fits)
    assert 0 < len(within) < len(all_networks)
    covered = {k.key for c in within for k in part_keys(c)}
    fitting = [c for c in DesignSpace(spec).sample(300, seed=2) if fits(c)]
    assert fitting and all(k.key in covered for c in fitting for k in part_keys(c))


@pytest.mark.slow
def test_table_predicts_from_its_entries_and_round_trips(small_table):
    table = LatencyTable.load(small_table)
    assert table.entries and all(v > 0 for v in table.entries.values())
    assert len(table.calibration_networks) == 5
    config = sample_configs(SMALL, 1, seed=9)[0]
    total, n = table.parts_sum(config)
    c = table.calibration
    assert table.predict(config) == pytest.approx(max(c.scale * total + c.per_part * (n - 1) + c.offset, 0.25 * total))
    # Doubling every entry moves the prediction by exactly the scaled sum (while above the floor).
    doubled = LatencyTable(fingerprint=table.fingerprint, entries={k: 2 * v for k, v in table.entries.items()},
                           calibration=table.calibration)
    if table.predict(config) > 0.25 * total:
        assert doubled.predict(config) - table.predict(config) == pytest.approx(c.scale * total)
    again = LatencyTable.load(table.save(small_table.with_name("again.json.gz")))
    assert again.calibration == c and again.assessment == table.assessment and again.probe_us == table.probe_us
    outside = SearchSpec.for_data(**DIGITS, families=("deep_roots",), widths=(48,), blocks=(2,))
    with pytest.raises(BadInput, match="no entry for"):
        table.predict(space_configs(outside)[0])


def test_a_table_states_its_own_error_on_networks_it_was_not_fitted_on(small_table, tmp_path, capsys):
    table = LatencyTable.load(small_table)
    fitted = {r["arch"] for r in table.calibration_networks}
    held = table.heldout_networks
    assert len(held) == 5 and not fitted & {r["arch"] for r in held}
    errors = [abs(table.calibration.apply(r) / r["measured_ms"] - 1) for r in held]
    a = table.assessment
    assert a.networks == 5 and a.share_within_10pct == pytest.approx(sum(e <= 0.1 for e in errors) / 5)
    assert a.worst_rel_error == pytest.approx(max(errors)) and a.repeat_median >= 0
    assert table.quality_lines()[0].startswith(f"held-out error: {a.share_within_10pct:.0%} of 5 networks")
    # The command prints it, and a search or pick can refuse a table below a share asked for.
    out = tmp_path / "t.json.gz"
    assert main(["latency-table", "--out", str(out), "--family", "igcv3", "--width", "8", "--blocks", "1",
                 "--calibration", "4", "--holdout", "4"]) == 0
    printed = capsys.readouterr().out
    built = LatencyTable.load(out)
    assert built.assessment.networks == 4 and built.quality_lines()[0] in printed
    impossible = dataclasses.replace(built.assessment, share_within_10pct=0.5)
    with pytest.raises(BadInput, match="predicts 50% of its held-out networks within"):
        require_share(impossible, 0.9, source="--latency-table t")
    assert impossible.below_goal and "below its goal" in impossible.lines()[1]
    base = ["search", "--output-dir", str(tmp_path / "runs"), "--family", "igcv3", "--width", "8", "--n-trials", "1"]
    for argv, expected in (([*base, "--latency-table-min-share", "0.9"], "needs --latency-table"),
                           ([*base, "--latency-table", str(out), "--latency-table-min-share", "1.5"],
                            "must be a share between 0 and 1")):
        assert main(argv) == 2
        assert expected in capsys.readouterr().err


class NoisyRunner:
    """PyTorch eager, each prepared call slowed by its own random factor (1x to 1.6x): what a machine whose
    speed changes from one measurement to the next looks like to a table, whatever the timer does."""

    def __init__(self, seed: int = 0) -> None:
        from igcnas.evaluators.latency_runtime import TorchRunner

        self.inner, self.rng = TorchRunner(threads=1), random.Random(seed)
        self.name, self.version, self.threads = "torch", self.inner.version, 1

    def prepare(self, module, input_shape, batch):
        call, extra = self.inner.prepare(module, input_shape, batch), self.rng.uniform(0.0, 0.6)

        def slowed():
            start = time.perf_counter()
            call()
            end = time.perf_counter() + extra * (time.perf_counter() - start)
            while time.perf_counter() < end:
                pass
        return slowed


@pytest.mark.slow
def test_a_table_built_under_noise_warns_and_says_what_it_measured(caplog):
    spec = SearchSpec.for_data(**DIGITS, families=("igcv3",), widths=(8,), blocks=(1,))
    with caplog.at_level("WARNING", logger="igcnas.evaluators.latency_build"):
        table = build_table(spec, runtime="torch", calibration=4, holdout=6, runner=NoisyRunner())
    a = table.assessment
    assert a.busy and a.repeat_median > 0.05  # the same networks, measured twice, disagree
    assert any("built on a busy machine" in r.getMessage() and f"{a.repeat_median:.1%}" in r.getMessage()
               for r in caplog.records)
    quiet = build_table(spec, runtime="torch", calibration=4, holdout=6)
    assert quiet.assessment.repeat_median < a.repeat_median


def test_calibration_keeps_extra_terms_only_when_they_predict_left_out_networks_better():
    # Networks whose latency is exactly the parts' sum plus 20 us per part: the per-part form wins.
    sizes = [(0.3, 5), (0.5, 8), (0.7, 11), (0.4, 9), (0.9, 14), (0.6, 6)]
    rows = [{"family": "igcv2", "parts_ms": s, "parts": n, "measured_ms": s + 0.02 * (n - 1)} for s, n in sizes]
    fit = choose_calibration(rows)
    assert fit.name == "per_part" and fit.offset == pytest.approx(0.0, abs=1e-6)
    assert fit.apply({"parts_ms": 1.0, "parts": 11}) == pytest.approx(1.0 + 0.2, abs=1e-6)
    assert choose_calibration(rows[:2]).name == "sum"  # too few networks: the plain sum


def test_calibration_form_does_not_follow_measurement_noise():
    """Networks that cost 1.1x their parts' sum, measured with 4% noise: every noise draw gives the same form
    and nearly the same scale (the old choice among seven forms changed form from run to run)."""
    rng = random.Random(0)
    base = [(rng.uniform(0.2, 2.0), rng.randint(4, 14)) for _ in range(40)]
    fits = []
    for draw in range(8):
        noise = random.Random(draw)
        rows = [{"family": "igcv2", "parts_ms": s, "parts": n, "measured_ms": 1.1 * s * noise.uniform(0.96, 1.04)}
                for s, n in base]
        fits.append(choose_calibration(rows))
    assert {f.name for f in fits} == {"scale"}
    assert max(f.scale for f in fits) - min(f.scale for f in fits) < 0.02


def test_a_table_from_another_device_or_runtime_is_refused_unless_forced(small_table, tmp_path, capsys):
    data = json.loads(gzip.open(small_table, "rt").read())
    data["fingerprint"]["cpu"] = "Some Other CPU 9000"
    other = tmp_path / "other.json.gz"
    with gzip.open(other, "wt") as handle:
        json.dump(data, handle)
    here = Fingerprint.here(runtime="torch", threads=1, batch=1, input_size=8, in_channels=1)
    with pytest.raises(BadInput, match="cpu 'Some Other CPU 9000' != "):
        LatencyTable.load(other).check(here)
    LatencyTable.load(other).check(here, force=True)  # forced: a warning, no error
    argv = ["search", "--output-dir", str(tmp_path / "runs"), "--family", "igcv3", "--width", "8", "--blocks", "1",
            "--n-trials", "1", "--epochs", "1", "--max-batches-per-epoch", "1", "--latency-table", str(other)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "measured elsewhere" in err and "--force-latency-table" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("study.db"))
    assert main([*argv, "--force-latency-table"]) == 0


def test_a_table_that_lacks_parts_of_the_space_is_refused_before_the_study(small_table, tmp_path, capsys):
    argv = ["search", "--output-dir", str(tmp_path), "--family", "igcv1", "--width", "16", "--n-trials", "1",
            "--latency-table", str(small_table)]
    assert main(argv) == 2
    assert "lacks" in capsys.readouterr().err
    assert not list(tmp_path.rglob("study.db"))


@pytest.mark.parametrize("argv,expected", [
    (["--runtime", "tensorflow"], "--runtime must be one of torch, onnxruntime"),
    (["--threads", "0"], "--threads must be an integer >= 1"),
    (["--dataset", "imagefolder"], "--in-channels is needed"),
    (["--structured", "maybe"], "--structured must be one of on, off"),
])
def test_latency_table_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, expected):
    assert main(["latency-table", "--out", str(tmp_path / "t.json.gz"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "t.json.gz").exists()


@pytest.fixture(scope="module")
def latency_study(small_table, tmp_path_factory):
    """A search of the small space with the table and a latency budget most of the space is over."""
    table = LatencyTable.load(small_table)
    predictions = sorted(set(table.predict(c) for c in sample_configs(SMALL, 40, seed=0)))  # as the search draws
    # Most draws are over it and some are not. Halfway between two predictions, so that no network sits on
    # the limit whatever this machine's timings are (the boundary itself is tests/nas/test_budget_boundary.py's).
    at = int(0.3 * len(predictions))
    limit = (predictions[at] + predictions[at + 1]) / 2
    out = tmp_path_factory.mktemp("search")
    options = SearchOptions(output_dir=str(out), study="lat", families=SMALL.families, widths=SMALL.widths,
                            blocks=SMALL.blocks, n_trials=4, epochs=1, max_batches_per_epoch=2, sampler="random",
                            latency_table=str(small_table), max_latency_ms=limit, latency_objective=True,
                            seed_balanced=False)  # random draws from the start, so some are over the budget
    return run_search(options), table, limit


@pytest.mark.slow
def test_search_never_trains_a_network_predicted_over_the_latency_budget(latency_study):
    from igcnas.search_space.config_io import config_from_dict

    outcome, table, limit = latency_study
    study = outcome.study
    assert study.metric_names[-1] == "latency_ms"
    assert study.user_attrs["igcnas:latency"]["fingerprint"]["runtime"] == "torch"
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    over = [t for t in study.trials if record_of(t.user_attrs).get("status") == "over_budget"]
    assert len(trained) == 4 and over
    for t in study.trials:
        predicted = table.predict(config_from_dict(record_of(t.user_attrs)["config"]))
        assert record_of(t.user_attrs)["latency_ms"] == pytest.approx(predicted, abs=1e-4)
        assert record_of(t.user_attrs)["latency_source"] == "predicted"
        if t in trained:
            assert predicted <= limit and t.values[-1] == pytest.approx(predicted, abs=1e-4)
            assert record_of(t.user_attrs)["latency_measured_ms"] > 0  # timed again after training
            measured_constraint = record_of(t.user_attrs)["latency_measured_ms"] / limit - 1
            assert t.constraints["max_latency_ms_measured"] == pytest.approx(measured_constraint, abs=1e-6)
        else:
            record = record_of(t.user_attrs)
            assert predicted > limit and "curve" not in record and "latency_measured_ms" not in record
            assert t.state == optuna.trial.TrialState.PRUNED


def test_pick_by_a_latency_table_re_predicts_and_times_the_pick_again(latency_study, small_table, tmp_path,
                                                                       capsys):
    outcome, table, limit = latency_study
    storage = f"sqlite:///{outcome.run_dir / 'study.db'}"
    argv = ["pick", "--storage", storage, "--study", "lat", "--max-latency-ms", str(limit * 10),
            "--latency-table", str(small_table), "--export", str(tmp_path / "out"), "--onnx", "off"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "measured" in out and table.fingerprint.runtime in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "latency: predicted" in report and "by the latency table of torch" in report
    # A budget no network meets by the table: refused with the nearest trials, nothing exported.
    argv[argv.index("--max-latency-ms") + 1] = str(min(table.entries.values()) / 10)
    argv[argv.index("--export") + 1] = str(tmp_path / "none")
    assert main(argv) == 2
    assert "no trial on the front fits the budget" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_a_table_built_for_a_budget_serves_a_search_with_that_budget(tmp_path):
    """Parts only over-budget networks use are not in such a table: those networks are pruned, not failed."""
    spec = SearchSpec.for_data(**DIGITS, families=("igcv2",), widths=(8, 16), blocks=(1,))
    limit = 2600  # about half the networks (1,282 to 4,250 params)

    def fits(config):
        from igcnas.search_space.costs import closed_form_costs

        return closed_form_costs(config).params <= limit

    table = build_table(spec, runtime="torch", calibration=0, holdout=0, fits=fits)
    assert any(not table.covers(c) for c in space_configs(spec))  # it really lacks the larger networks' parts
    path = table.save(tmp_path / "t.json.gz")
    options = SearchOptions(output_dir=str(tmp_path), study="b", families=spec.families, widths=spec.widths,
                            blocks=spec.blocks, n_trials=2, epochs=1, max_batches_per_epoch=1, sampler="random",
                            seed_balanced=False, max_params=limit, latency_table=str(path))
    study = run_search(options).study
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    over = [t for t in study.trials if record_of(t.user_attrs).get("status") == "over_budget"]
    assert over and all("latency_ms" not in record_of(t.user_attrs) for t in over)


def test_extending_a_table_keeps_its_calibration_networks(small_table, tmp_path):
    table = LatencyTable.load(small_table)
    before = {r["arch"] for r in table.calibration_networks}
    more = SearchSpec.for_data(**DIGITS, families=("igcv3",), widths=(16,), blocks=(1,))
    extended = build_table(more, runtime="torch", table=table, calibration=3, holdout=3, seed=1)
    assert before < {r["arch"] for r in extended.calibration_networks}
    assert len(extended.entries) > len(LatencyTable.load(small_table).entries)
    unchanged = build_table(more, runtime="torch", table=extended, calibration=0, holdout=0)
    assert unchanged.calibration == extended.calibration  # nothing new measured: the fit stays


def test_damaged_tables_and_misplaced_flags_are_bad_input(small_table, tmp_path, capsys):
    damaged = tmp_path / "damaged.json.gz"
    with gzip.open(damaged, "wt") as handle:
        json.dump({"format": TABLE_FORMAT, "fingerprint": {"cpu": "x"}, "entries": {}}, handle)
    base = ["search", "--output-dir", str(tmp_path / "runs"), "--family", "igcv3", "--width", "8", "--n-trials", "1"]
    cases = [([*base, "--latency-table", str(damaged)], "is damaged"),
             ([*base, "--force-latency-table"], "--force-latency-table needs --latency-table"),
             (["latency-table", "--out", str(tmp_path)], "is a folder"),
             (["latency-table", "--out", str(small_table), "--dataset", "cifar10"], "is for 1x8x8 images")]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (argv, err)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("study.db"))
