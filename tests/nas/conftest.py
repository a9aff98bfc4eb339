"""A real local two-node Ray cluster on 127.0.0.1 (head + worker node), for the Ray backend's tests."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


