"""The Ray backend on a cluster without a shared disk, and across driver restarts.

The cluster: a head with no CPUs for trials and one worker node started in its own mount namespace
with a private tmpfs over the folder the runs write to, so nothing the worker node writes there
reaches the head's disk (and the head's files there are not on the worker's). Every trial trains on
that node; the driver (this process or an ``igc-nas search`` subprocess) runs on the head.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from igcnas.cli import main
from igcnas.nas.backends.ray_trials import DriverLease, driver_identity, requeue_orphans
from igcnas.nas.records import SystemKey, TrialKey, record_of
from igcnas.nas.study import load_weights, open_storage, open_study
from tests.nas.conftest import LOOPBACK_ENV, LoopbackCluster


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory, loopback_env):
    runs = tmp_path_factory.mktemp("runs")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot give a Ray node a private disk")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "igcnas-probe",
                            str(runs)], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"a private mount namespace is not permitted here: {probe.stderr.strip() or probe.returncode}")
    cluster = LoopbackCluster(tmp_path_factory.mktemp("ray"))
    try:
        cluster.start_head("--num-cpus=0")  # no trial runs on the head
        # The worker node sees an empty private tmpfs at `runs`: what it writes there stays its own.
        script = f'mount -t tmpfs igcnas-private {shlex.quote(str(runs))} && exec "$@"'
        cluster.add_worker("--num-cpus=2", prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                                   script, "sh"])
        alive = cluster.wait_for(2)
        assert len(alive) == 2
        worker = next(n["NodeID"] for n in alive if n["Resources"].get("CPU", 0) > 0)
        (runs / "head-marker").write_text("written on the head")
        assert _listing_on(cluster.address, worker, runs) == ["worker-marker"]  # the head's file is not there
        assert not (runs / "worker-marker").exists()  # and the worker's file is not here
        yield SimpleNamespace(address=cluster.address, runs=runs, worker=worker)
    finally:
        cluster.stop()


def _listing_on(address: str, node_id: str, folder: Path) -> list[str]:
    """Write a marker into ``folder`` on node ``node_id`` and list the folder there."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def look(path: str) -> list[str]:
        (Path(path) / "worker-marker").write_text("written on the worker node")
        return sorted(os.listdir(path))

    ray.init(address=address, logging_level="ERROR")
    try:
        task = ray.remote(num_cpus=0)(look).options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id,
                                                                                                      soft=False))
        return ray.get(task.remote(str(folder)), timeout=120)
    finally:
        ray.shutdown()


def _study(url: str, name: str):
    return open_study(open_storage(url, heartbeat=False), name, create=False)


@pytest.mark.slow
def test_weights_come_back_from_a_node_that_shares_no_disk(private_cluster, tmp_path, capsys):
    out = private_cluster.runs / "nodisk"
    code = main(["search", "--backend", "ray", "--address", private_cluster.address, "--n-trials", "3", "--epochs", "1",
                 "--max-batches-per-epoch", "3", "--width", "8", "--blocks", "1", "--output-dir", str(out),
                 "--study", "nodisk", "--cpus-per-trial", "1", "--no-early-stopping"])
    err = capsys.readouterr()[1]
    assert code == 0, err
    url = f"sqlite:///{out / 'nodisk' / 'study.db'}"
    complete = [t for t in _study(url, "nodisk").trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    store = out / "nodisk" / "artifacts"
    for t in complete:
        assert record_of(t.user_attrs)[TrialKey.RAY_NODE] == f"127.0.0.1 {private_cluster.worker[:12]}"  # trained there
        weights = load_weights(record_of(t.user_attrs)[TrialKey.WEIGHTS_ARTIFACT], store)  # stored here, by the driver
        assert weights and all(isinstance(v, torch.Tensor) for v in weights.values())
    assert not (out / "nodisk" / "artifacts" / "pending").exists()

    # pick --export takes a trial's own weights, as trained on the worker node: no retraining.
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "m")]) == 0
    number = int(capsys.readouterr()[0].split("picked trial ")[1].split(":")[0])
    trial = next(t for t in complete if t.number == number)
    assert record_of(trial.user_attrs)[TrialKey.RAY_NODE].endswith(private_cluster.worker[:12])
    exported = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    stored = load_weights(record_of(trial.user_attrs)[TrialKey.WEIGHTS_ARTIFACT], store)
    assert exported.keys() == stored.keys() and all(torch.equal(exported[k], stored[k]) for k in stored)
    assert "the trial's own" in (tmp_path / "m" / "report.md").read_text()


@pytest.mark.slow
def test_a_node_that_cannot_load_the_data_is_named_before_any_trial(private_cluster, capsys):
    from PIL import Image

    data = private_cluster.runs / "images"  # on the head's disk only
    for cls, color in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (data / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (12, 12), color).save(data / cls / f"{i}.png")
    out = private_cluster.runs / "nodata"
    code = main(["search", "--backend", "ray", "--address", private_cluster.address, "--dataset", "imagefolder",
                 "--data-dir", str(data), "--n-trials", "1", "--epochs", "1", "--width", "8", "--blocks", "1",
                 "--output-dir", str(out), "--study", "nodata"])
    err = capsys.readouterr()[1]
    assert code == 2, err
    line = next(line for line in err.splitlines() if "cannot load data set" in line)
    assert f"node 127.0.0.1 {private_cluster.worker[:12]}" in line and "does not exist" in line, line
    study = _study(f"sqlite:///{out / 'nodata' / 'study.db'}", "nodata")
    assert not [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]  # nothing was scheduled


def _trials(url: str, study: str) -> list:
    try:
        return _study(url, study).get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - the study is not created yet
        return []


@pytest.mark.slow
def test_a_killed_driver_is_recovered_by_the_next_run(private_cluster, tmp_path):
    """SIGKILL the ``igc-nas search --backend ray`` process mid-search, then run the same command again."""
    n_trials = 4
    url = f"sqlite:///{tmp_path / 'restart' / 'study.db'}"
    command = [sys.executable, "-m", "igcnas.cli", "search", "--backend", "ray", "--address", private_cluster.address,
               "--n-trials", str(n_trials), "--epochs", "3", "--width", "8", "--width", "16", "--blocks", "1",
               "--output-dir", str(tmp_path), "--study", "restart", "--no-early-stopping", "--no-seed-balanced",
               "--cpus-per-trial", "1"]
    env = {**os.environ, **LOOPBACK_ENV}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    complete, running = [], []
    deadline = time.time() + 240
    while not (complete and running) and time.time() < deadline:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        trials = _trials(url, "restart")
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                   and record_of(t.user_attrs).get(TrialKey.RAY_DRIVER, {}).get("pid") == first.pid]
        time.sleep(0.3)
    assert complete and running, "the first driver never had a trial complete and one running"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    trials = _trials(url, "restart")
    before = {t.number: t.values for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    orphans = {t.number: t.params for t in trials if t.state == optuna.trial.TrialState.RUNNING}
    assert orphans, "the killed driver left no RUNNING trial"

    again = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert f"this run trained {n_trials} to the end" in again.stdout, again.stdout[-2000:]
    trials = _trials(url, "restart")
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states, states
    after = {t.number: t.values for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert all(after[n] == v for n, v in before.items())  # every earlier COMPLETE trial is unchanged
    by_number = {t.number: t for t in trials}
    for number, params in orphans.items():
        orphan = by_number[number]
        assert orphan.state == optuna.trial.TrialState.FAIL and orphan.system_attrs[SystemKey.STALE] is True
        assert f"Ray driver (pid {first.pid} on" in record_of(orphan.user_attrs)[TrialKey.FAIL_REASON]
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert len(retried) == 1 and retried[0].params == params  # re-queued once, same parameters
        assert retried[0].state == optuna.trial.TrialState.COMPLETE
        assert record_of(retried[0].user_attrs)[TrialKey.RAY_DRIVER]["pid"] != first.pid  # trained by the new driver
    print(f"[ray driver kill] completed before {len(before)}, re-queued {sorted(orphans)}, "
          f"completed after {len(after)}")


@pytest.mark.slow
def test_a_driver_elsewhere_is_gone_only_once_its_lease_is_older_than_the_grace_period(tmp_path):
    """Which RUNNING Ray trials a new driver takes for orphans (no cluster needed: the study alone)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'lease.db'}", heartbeat=False)
    study = optuna.create_study(study_name="lease", storage=storage, directions=["maximize"])
    me, now = driver_identity(), time.time()
    elsewhere = {"host": "another-machine", "pid": os.getpid(), "start_ticks": 1, "started": "2020-01-01T00:00:00"}
    here_dead = {**me, "pid": 2 ** 22 + 7}  # no such process here
    cases = {"expired lease": (elsewhere, now - 120), "fresh lease": (elsewhere, now - 5),
             "this live driver": (me, now - 600), "dead driver here": (here_dead, now)}
    numbers = {}
    for name, (driver, lease) in cases.items():
        trial = study.ask()
        trial.suggest_int("x", 0, 9)
        trial.set_user_attr(TrialKey.BACKEND, "ray")
        trial.set_user_attr(TrialKey.RAY_DRIVER, driver)
        storage.set_trial_system_attr(trial._trial_id, SystemKey.DRIVER_LEASE, lease)
        numbers[name] = trial.number
    done = study.ask()
    done.set_user_attr(TrialKey.BACKEND, "ray")
    done.set_user_attr(TrialKey.RAY_DRIVER, elsewhere)
    study.tell(done, 0.5)
    failed = requeue_orphans(study, grace=60)
    assert sorted(failed) == sorted([numbers["expired lease"], numbers["dead driver here"]])
    trials = study.get_trials(deepcopy=False)
    assert trials[done.number].state == optuna.trial.TrialState.COMPLETE and trials[done.number].values == [0.5]
    assert trials[numbers["fresh lease"]].state == optuna.trial.TrialState.RUNNING
    assert trials[numbers["this live driver"]].state == optuna.trial.TrialState.RUNNING
    assert "has not renewed its lease" in record_of(trials[numbers["expired lease"]].user_attrs)[TrialKey.FAIL_REASON]
    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(failed)
    for t in waiting:  # the copy is the parameters only: whoever takes it records its own run
        assert t.params == trials[t.system_attrs["failed_trial"]].params
        assert TrialKey.BACKEND not in record_of(t.user_attrs) and SystemKey.DRIVER_LEASE not in t.system_attrs
    assert requeue_orphans(study, grace=60) == []  # failed trials are not re-queued twice

    # A live driver renews the lease of its own RUNNING trials only.
    mine, theirs = trials[numbers["this live driver"]], trials[numbers["fresh lease"]]
    lease = DriverLease(study, me, interval=0.1)
    lease.start()
    time.sleep(1.0)
    lease.stop()
    renewed = {t.number: t.system_attrs[SystemKey.DRIVER_LEASE] for t in study.get_trials(deepcopy=False)
               if t.number in (mine.number, theirs.number)}
    assert renewed[mine.number] > now and renewed[theirs.number] == theirs.system_attrs[SystemKey.DRIVER_LEASE]
