"""The Ray Tune backend on a real local two-node Ray cluster (head + worker on 127.0.0.1)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from igcnas.cli import main
from igcnas.nas.optuna_driver import open_storage, open_study
from igcnas.search_space.config import config_from_dict
from igcnas.search_space.enumerate import arch_id

RAY = [sys.executable, str(Path(__file__).with_name("ray_loopback.py"))]
LOOPBACK_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    port = free_port()
    # A loopback test cluster: every process on 127.0.0.1, no token authentication, no usage reporting.
    previous = {key: os.environ.get(key) for key in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)
    env = dict(os.environ)
    temp = tmp_path_factory.mktemp("ray")
    common = ["--num-cpus=1", "--disable-usage-stats"]
    head = [*RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
            f"--temp-dir={temp}", *common]
    subprocess.run(head, check=True, env=env, capture_output=True, timeout=180)
    address = f"127.0.0.1:{port}"
    worker = [*RAY, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common]
    subprocess.run(worker, check=True, env=env, capture_output=True, timeout=180)
    import ray

    ray.init(address=address, logging_level="ERROR")
    deadline = time.time() + 60
    while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
        time.sleep(1)
    alive = [n for n in ray.nodes() if n["Alive"]]
    ray.shutdown()
    assert len(alive) == 2
    assert {n["NodeManagerAddress"] for n in alive} == {"127.0.0.1"}
    yield address
    subprocess.run([*RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_ray_backend_writes_every_trial_into_the_optuna_study(ray_cluster, tmp_path, capsys):
    code = main(["search", "--backend", "ray", "--address", ray_cluster, "--n-trials", "4", "--epochs", "1",
                 "--max-batches-per-epoch", "3", "--width", "8", "--blocks", "1", "--output-dir", str(tmp_path),
                 "--study", "ray-study", "--cpus-per-trial", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Pareto front" in out
    storage = open_storage(f"sqlite:///{tmp_path / 'ray-study' / 'study.db'}", heartbeat=False)
    study = open_study(storage, "ray-study", create=False)
    trials = study.trials
    assert len(trials) == 4
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.user_attrs["backend"] == "ray"
        config = config_from_dict(t.user_attrs["config"])
        assert arch_id(config) == t.user_attrs["arch_id"]
        assert t.values[1] == t.user_attrs["params"] and t.values[2] == t.user_attrs["macs"]
        assert t.user_attrs["curve"][-1] == t.values[0]

    # The same study grows with the Optuna backend and is read by the same tools.
    code = main(["search", "--n-trials", "1", "--epochs", "1", "--max-batches-per-epoch", "2", "--width", "8",
                 "--blocks", "1", "--output-dir", str(tmp_path), "--study", "ray-study"])
    assert code == 0
    assert len(open_study(storage, "ray-study", create=False).trials) == 5


def test_unreachable_ray_address_is_a_clear_error(tmp_path, capsys):
    port = free_port()
    code = main(["search", "--backend", "ray", "--address", f"127.0.0.1:{port}", "--n-trials", "1",
                 "--output-dir", str(tmp_path)])
    err = capsys.readouterr()[1]
    assert code == 2 and "cannot connect to the Ray cluster" in err

