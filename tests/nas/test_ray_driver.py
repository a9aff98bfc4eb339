"""The Ray Tune backend on a real local two-node Ray cluster (head + worker on 127.0.0.1)."""

import io
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.nas.study import load_weights, open_storage, open_study, store_weights
from igcnas.search_space.config_io import config_from_dict
from igcnas.search_space.enumerate import arch_id
from tests.nas.conftest import CLUSTERS, LOOPBACK_ENV, free_port


@pytest.mark.slow
def test_ray_backend_writes_every_trial_into_the_optuna_study(ray_cluster, tmp_path, capsys):
    code = main(["search", "--backend", "ray", "--address", ray_cluster, "--n-trials", "4", "--epochs", "1",
                 "--max-batches-per-epoch", "3", "--width", "8", "--blocks", "1", "--output-dir", str(tmp_path),
                 "--study", "ray-study", "--cpus-per-trial", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Pareto front" in out and "this run trained 4 to the end and stopped 0 early" in out
    assert len(re.findall(r"^trial +\d+ +val acc", err, flags=re.M)) == 4  # one line per trial, seeds too
    assert "Failed to fetch metrics" not in out + err and "Heartbeat of storage" not in err
    storage = open_storage(f"sqlite:///{tmp_path / 'ray-study' / 'study.db'}", heartbeat=False)
    study = open_study(storage, "ray-study", create=False)
    trials = study.trials
    assert len(trials) == 4
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert record_of(t.user_attrs)["backend"] == "ray"
        config = config_from_dict(record_of(t.user_attrs)["config"])
        assert arch_id(config) == record_of(t.user_attrs)["arch_id"]
        assert t.values[1] == record_of(t.user_attrs)["params"] and t.values[2] == record_of(t.user_attrs)["macs"]
        assert record_of(t.user_attrs)["curve"][-1] == t.values[0]
        assert record_of(t.user_attrs)["ray_node"].startswith("127.0.0.1 ")
        record = record_of(t.user_attrs)
        assert record["weights_artifact"] and record["ray_driver"]["pid"] == os.getpid()
    assert not (tmp_path / "ray-study" / "artifacts" / "pending").exists()  # weights came in the results

    # The same study grows with the Optuna backend and is read by the same tools.
    code = main(["search", "--n-trials", "1", "--epochs", "1", "--max-batches-per-epoch", "2", "--width", "8",
                 "--blocks", "1", "--output-dir", str(tmp_path), "--study", "ray-study"])
    assert code == 0
    assert len(open_study(storage, "ray-study", create=False).trials) == 5


def test_a_result_without_its_weights_cannot_complete_the_trial(tmp_path):
    """The searcher stores weights before anything else; a result without them raises (and the searcher
    then fails the trial with that reason, as for a failed upload: tests/nas/test_backends.py)."""
    from igcnas.nas.backends.ray_backend import _record_result
    from igcnas.nas.records import RayKey, TrialRecorder

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize"])
    trial = study.ask()
    result = {RayKey.STATUS: "complete", RayKey.NODE: "10.0.0.7 abc", "val_accuracy": 0.5}
    with pytest.raises(RuntimeError, match=r"weights did not arrive with its result \(from 10.0.0.7 abc\)"):
        _record_result(TrialRecorder(trial), result, store_weights, tmp_path / "artifacts")
    assert "status" not in record_of(study.trials[0].user_attrs)  # nothing recorded as complete
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(3.0)}, buffer)
    _record_result(TrialRecorder(trial), {**result, RayKey.WEIGHTS: buffer.getvalue()}, store_weights,
                   tmp_path / "artifacts")
    stored = load_weights(record_of(study.trials[0].user_attrs)["weights_artifact"], tmp_path / "artifacts")
    assert torch.equal(stored["w"], torch.arange(3.0))


def test_unreachable_ray_address_is_a_clear_error(tmp_path, capsys):
    port = free_port()
    code = main(["search", "--backend", "ray", "--address", f"127.0.0.1:{port}", "--n-trials", "1",
                 "--output-dir", str(tmp_path)])
    err = capsys.readouterr()[1]
    assert code == 2 and "cannot connect to the Ray cluster" in err



@pytest.mark.slow
def test_ray_scheduler_stops_dominated_trials_at_the_first_rung(ray_cluster, tmp_path, capsys):
    from igcnas.nas.options import SearchOptions
    from tests.nas.test_early_stopping import _dominating_study

    url = f"sqlite:///{tmp_path / 'es.db'}"
    # Earlier trials with 100% accuracy at one parameter: the scheduler reads them as rung members.
    _dominating_study(url, "ray-es", SearchOptions(epochs=3, max_batches_per_epoch=2).fidelity)
    code = main(["search", "--backend", "ray", "--address", ray_cluster, "--n-trials", "2", "--epochs", "3",
                 "--max-batches-per-epoch", "2", "--width", "8", "--blocks", "1", "--storage", url,
                 "--study", "ray-es", "--output-dir", str(tmp_path), "--no-seed-balanced",
                 "--min-epochs", "1"])
    err = capsys.readouterr()[1]
    assert code == 0, err
    new = [t for t in open_study(open_storage(url, heartbeat=False), "ray-es", create=False).trials if t.number >= 3]
    assert len(new) == 2
    for t in new:
        assert t.state == optuna.trial.TrialState.PRUNED, (t.state, record_of(t.user_attrs))
        assert record_of(t.user_attrs)["status"] == "stopped_early" and record_of(t.user_attrs)["stopped_at_epoch"] == 1
        assert len(record_of(t.user_attrs)["curve"]) == 1 and record_of(t.user_attrs)["backend"] == "ray"


def _count(url: str, study: str, state: optuna.trial.TrialState) -> list:
    try:
        trials = open_study(open_storage(url, heartbeat=False), study, create=False).get_trials(deepcopy=False)
    except ValueError:
        return []
    return [t for t in trials if t.state == state]


def _trials_training_on(raylet: int) -> dict[str, str]:
    """Process id -> process line of the Tune trial actors busy in their ``train`` call (process title
    ``ray::ImplicitFunc.train``) whose parent is the raylet ``raylet`` (a process id)."""
    children = subprocess.run(["pgrep", "-a", "-P", str(raylet)], check=False, capture_output=True,
                              text=True).stdout
    return {line.split()[0]: line for line in children.splitlines() if "ImplicitFunc.train" in line}


@pytest.mark.slow
def test_killed_worker_node_loses_no_completed_trial(ray_cluster, tmp_path):
    """The worker node's raylet is SIGKILLed while trials run on it (last test of the module: it breaks
    the module's cluster, which the fixture then stops). Its ``ray start --block`` process then stops
    the rest of that node, as when a machine is lost."""
    cluster = CLUSTERS[ray_cluster]
    raylet = cluster.raylet_pid(cluster.nodes[1])
    env = {**os.environ, **LOOPBACK_ENV}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    n_trials = 6
    log = open(tmp_path / "search.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "igcnas.cli", "search", "--backend", "ray", "--address",
                             ray_cluster, "--n-trials", str(n_trials), "--epochs", "4", "--width", "8", "--width",
                             "16", "--blocks", "1", "--storage", url, "--study", "node", "--output-dir",
                             str(tmp_path), "--no-early-stopping", "--cpus-per-trial", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not _count(url, "node", optuna.trial.TrialState.COMPLETE) and time.time() < deadline:
        assert proc.poll() is None, (tmp_path / "search.log").read_text()[-3000:]
        time.sleep(0.5)
    # Then wait until a trial starts training on the worker node, and kill the node a second into it
    # (a trial takes several seconds: it is mid-training then, not finishing).
    seen = set(_trials_training_on(raylet))
    while not (fresh := set(_trials_training_on(raylet)) - seen) and time.time() < deadline:
        assert proc.poll() is None, (tmp_path / "search.log").read_text()[-3000:]
        time.sleep(0.1)
    assert fresh, "no trial started on the worker node"
    time.sleep(1.0)
    before = {t.number: t.values for t in _count(url, "node", optuna.trial.TrialState.COMPLETE)}
    assert before, "no trial completed before the kill"
    os.kill(raylet, signal.SIGKILL)
    rc = proc.wait(timeout=480)
    log.close()
    text = (tmp_path / "search.log").read_text()
    assert rc == 0, text[-3000:]
    assert "Trial task failed" in text, text[-3000:]  # the trial on the killed node failed (Tune retried it)
    trials = open_study(open_storage(url, heartbeat=False), "node", create=False).get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states, states
    after = {t.number: t.values for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert all(after.get(n) == v for n, v in before.items())  # nothing completed is lost or changed
    assert len(after) >= n_trials - 1  # at most the trial lost with the node is failed (else retried)
    print(f"[ray node kill] completed before the kill {len(before)}, at the end {len(after)}/{n_trials}, "
          f"states {sorted(s.name for s in states)}")
