"""Real local Ray clusters on 127.0.0.1 (a head and worker nodes), for the Ray backend's tests.

Every node is a ``ray start --block`` process of this test session: stopping a cluster signals those
processes by id (a node shuts its own processes down on SIGTERM), never ``ray stop``, which would
stop every Ray process on the machine, other sessions' clusters included.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

RAY = [sys.executable, str(Path(__file__).with_name("ray_loopback.py"))]
LOOPBACK_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0"}
# address -> the running cluster of this session with that address (a plain str is what Ray accepts)
CLUSTERS: dict[str, "LoopbackCluster"] = {}
STARTED = "This command will now block forever"  # what `ray start --block` logs once its node is up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grpc_proxy_over(url: str):
    """Optuna's gRPC storage proxy over the database ``url``, served in this process: (the server, a function
    returning a client connected to it)."""
    import optuna
    from optuna.storages._grpc.server import make_server

    from igcnas.nas.study import open_storage

    port = free_port()
    server = make_server(open_storage(url, heartbeat=False), "127.0.0.1", port)
    server.start()

    def client() -> "optuna.storages.GrpcStorageProxy":
        proxy = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
        proxy.wait_server_ready(timeout=10)
        return proxy

    return server, client


class LoopbackCluster:
    """A head and worker nodes on 127.0.0.1, each a ``ray start --block`` child process of this test."""

    def __init__(self, temp: Path) -> None:
        self.temp = temp
        self.nodes: list[subprocess.Popen] = []
        self.address = ""

    def _start(self, args: Sequence[str], prefix: Sequence[str] = ()) -> subprocess.Popen:
        log_path = self.temp / f"node{len(self.nodes)}.log"
        env = {**os.environ, **LOOPBACK_ENV}
        with open(log_path, "w") as log:
            proc = subprocess.Popen([*prefix, *RAY, "start", "--block", "--node-ip-address=127.0.0.1",
                                     "--disable-usage-stats", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.nodes.append(proc)
        deadline = time.time() + 180
        while STARTED not in log_path.read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start {' '.join(args)} failed:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        return proc

    def start_head(self, *args: str) -> None:
        port = free_port()
        CLUSTERS[f"127.0.0.1:{port}"] = self
        self._start(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={self.temp}",
                     f"--ray-client-server-port={free_port()}", *args])
        self.address = f"127.0.0.1:{port}"

    def add_worker(self, *args: str, prefix: Sequence[str] = ()) -> subprocess.Popen:
        return self._start([f"--address={self.address}", *args], prefix)

    def wait_for(self, n_nodes: int) -> list[dict]:
        """The alive nodes, once there are ``n_nodes`` of them."""
        import ray

        ray.init(address=self.address, logging_level="ERROR")
        try:
            deadline = time.time() + 60
            while len([n for n in ray.nodes() if n["Alive"]]) < n_nodes and time.time() < deadline:
                time.sleep(1)
            return [n for n in ray.nodes() if n["Alive"]]
        finally:
            ray.shutdown()

    def raylet_pid(self, node: subprocess.Popen) -> int:
        """The process id of the raylet that ``node`` (one of this cluster's) started."""
        children = subprocess.run(["pgrep", "-P", str(node.pid), "-f", "raylet/raylet"], check=False,
                                  capture_output=True, text=True).stdout.split()
        assert len(children) == 1, children
        return int(children[0])

    def stop(self) -> None:
        CLUSTERS.pop(self.address, None)
        for proc in reversed(self.nodes):  # workers first, the head last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.nodes):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture(scope="module")
def loopback_env():
    """The loopback switches in this process's environment for the module (Ray drivers read them)."""
    previous = {key: os.environ.get(key) for key in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)
    yield
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory, loopback_env):
    """A head and one worker node, one CPU each; yields the address (``CLUSTERS[address]``: the cluster)."""
    cluster = LoopbackCluster(tmp_path_factory.mktemp("ray"))
    try:
        cluster.start_head("--num-cpus=1")
        cluster.add_worker("--num-cpus=1")
        alive = cluster.wait_for(2)
        assert len(alive) == 2
        assert {n["NodeManagerAddress"] for n in alive} == {"127.0.0.1"}
        yield cluster.address
    finally:
        cluster.stop()
