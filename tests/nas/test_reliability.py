"""Interrupted, concurrent and faulty searches lose nothing, on every storage kind: SQLite, an Optuna journal
file, PostgreSQL on 127.0.0.1, and `igc-nas storage-proxy` (gRPC) in front of PostgreSQL or SQLite."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings

import optuna
import pytest

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.errors import SearchFailed
from igcnas.nas.options import SearchOptions
from igcnas.nas.orchestrator import run_search
from igcnas.nas.study import open_storage
from igcnas.nas.pareto import pareto_mask, trials_frame

PG_URL = os.environ.get("IGCNAS_TEST_POSTGRES", "postgresql+psycopg2://igcnas:igcnas@127.0.0.1:5432/igcnas")


def postgres_available() -> bool:
    from igcnas.nas.study import database_reachable

    return database_reachable(PG_URL)


needs_postgres = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1 not available "
                                    "(.ci/postgres-up starts it)")
QUICK = ["--epochs", "2", "--max-batches-per-epoch", "15", "--width", "8", "--width", "16", "--blocks", "1",
         "--heartbeat-interval", "1", "--grace-period", "3"]
# Every storage kind a search can use; `storage_url` (indirect) turns one into a fresh URL.
STORAGE_KINDS = ["sqlite", "journal", pytest.param("postgresql", marks=needs_postgres),
                 pytest.param("grpc-postgresql", marks=needs_postgres)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(database_url: str) -> tuple[subprocess.Popen, str]:
    """A real `igc-nas storage-proxy` on a free port, once it answers; (process, grpc:// URL)."""
    from optuna.storages import GrpcStorageProxy

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "igcnas.cli", "storage-proxy", "--storage", database_url,
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180  # start-up imports take many seconds on a busy machine
    while True:
        if proc.poll() is not None:
            pytest.fail(f"storage-proxy exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(timeout=2)
            return proc, f"grpc://127.0.0.1:{port}"
        except ConnectionError:
            if time.time() > deadline:
                proc.kill()
                raise


def stop_proxy(proc: subprocess.Popen) -> str:
    """Ctrl-C, as a user stops it; its stderr."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return err


@pytest.fixture(scope="module")
def pg_proxy():
    proc, url = start_proxy(PG_URL)
    yield url
    stop_proxy(proc)


@pytest.fixture(scope="module")
def sqlite_proxy(tmp_path_factory):
    proc, url = start_proxy(f"sqlite:///{tmp_path_factory.mktemp('proxy') / 'behind-proxy.db'}")
    yield url
    stop_proxy(proc)


@pytest.fixture
def storage_url(request, tmp_path):
    kind = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if kind == "journal":
        return f"journal://{tmp_path / 'study.log'}"
    if kind == "postgresql":
        return PG_URL
    return request.getfixturevalue({"grpc-postgresql": "pg_proxy", "grpc-sqlite": "sqlite_proxy"}[kind])


def load(url: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(url, heartbeat=False))


def search_cmd(storage: str, study: str, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "igcnas.cli", "search", "--storage", storage, "--study", study,
            "--output-dir", str(out), *QUICK, *extra]


def wait_for_running_trial(storage: str, study: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Return once ``study`` has a RUNNING trial, or ``proc`` ended (nothing left to do), or ``timeout``."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        try:
            if load(storage, study).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                return
        except KeyError:  # the study is not created yet
            pass
        time.sleep(0.2)


def complete_trials(storage: str, study: str) -> dict[int, tuple]:
    s = load(storage, study)
    return {t.number: tuple(t.values) for t in s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


@pytest.mark.parametrize("storage_url", STORAGE_KINDS, indirect=True)
@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_loses_nothing(storage_url, tmp_path, capsys, request):
    storage, kind = storage_url, request.node.callspec.params["storage_url"]
    study = f"kill-{uuid.uuid4().hex[:8]}"
    target = 6
    cmd = search_cmd(storage, study, tmp_path, "--total-trials", str(target))
    rng = random.Random(7)
    kills, seen = 0, {}
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill at a random moment once this run has a trial going (training or writing): a fixed delay
        # from the start missed every run on an idle machine, where all six trials finish in seconds.
        wait_for_running_trial(storage, study, proc)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        try:
            now = complete_trials(storage, study)
        except KeyError:
            now = {}
        assert all(now[n] == v for n, v in seen.items())  # nothing completed is lost or changed
        seen = now
        time.sleep(3.5)  # past the grace period: the next run fails the stale trial and re-runs it
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = complete_trials(storage, study)
    assert len(final) == target
    assert all(final[n] == v for n, v in seen.items())
    s = load(storage, study)
    failed = s.get_trials(states=(optuna.trial.TrialState.FAIL,))
    df = trials_frame(s)
    assert df[df["state"] == "FAIL"]["fail_reason"].notna().all()
    retried = [t for t in s.trials if "failed_trial" in t.system_attrs]
    assert kills >= 1
    assert len(retried) == len(failed)  # every interrupted trial was re-queued with its parameters
    print(f"[{kind}] kill points: {kills}, completed {len(final)}/{target}, interrupted and re-run "
          f"{len(failed)}, lost 0")


@pytest.mark.slow
def test_sigint_stops_cleanly_and_records_the_running_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'i.db'}"
    proc = subprocess.Popen(search_cmd(storage, "int", tmp_path, "--n-trials", "50", "--epochs", "40"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180  # on a busy machine start-up alone can take many seconds: wait for a trial
    while time.time() < deadline and proc.poll() is None:
        try:
            running = optuna.load_study(study_name="int", storage=storage).get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:
            running = []
        if running:
            break
        time.sleep(0.5)
    time.sleep(2)  # into the trial's training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    s = optuna.load_study(study_name="int", storage=storage)
    assert not s.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert s.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert (tmp_path / "int" / "trials.csv").is_file()


@needs_postgres
@pytest.mark.slow
def test_four_workers_share_one_postgres_study_exactly(tmp_path, capsys):
    study = f"workers-{uuid.uuid4().hex[:8]}"
    target = 8
    procs = [subprocess.Popen(search_cmd(PG_URL, study, tmp_path / f"w{i}", "--total-trials", str(target),
                                         "--sampler-seed", str(i)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
    s = optuna.load_study(study_name=study, storage=PG_URL)
    numbers = [t.number for t in s.trials]
    assert len(numbers) == len(set(numbers))
    assert len(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == target
    csv = tmp_path / "exported.csv"
    assert main(["trials", "--storage", PG_URL, "--study", study, "--csv", str(csv)]) == 0
    import pandas as pd

    exported = pd.read_csv(csv)
    from_csv = sorted(exported[pareto_mask(exported)]["number"])
    df = trials_frame(s)
    assert from_csv == sorted(df[pareto_mask(df)]["number"])


@pytest.mark.slow
def test_trial_faults_fail_that_trial_with_a_reason_and_the_study_goes_on(tmp_path):
    from igcnas.nas.trial_evaluation import evaluate_config

    calls = {"n": 0}

    def flaky(config, data, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom in the model")
        return evaluate_config(config, data, **kwargs)

    options = SearchOptions(output_dir=str(tmp_path), n_trials=3, epochs=1, max_batches_per_epoch=3, widths=(8,),
                            blocks=(1,), study="faults")
    outcome = run_search(options, evaluate=flaky)
    trials = outcome.study.trials
    assert len([t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and "boom in the model" in record_of(failed[0].user_attrs)["fail_reason"]


@pytest.mark.parametrize("changes, reason", [
    ({"lr": 1e12}, "loss became"),
    ({"trial_timeout": 1e-6}, "time limit"),
    ({"trial_memory_mb": 1.0}, "memory limit"),
])
@pytest.mark.slow
def test_diverging_slow_or_hungry_trials_are_failed_with_the_reason(tmp_path, monkeypatch, changes, reason):
    if "trial_memory_mb" in changes:
        # A trial that keeps allocating: its resident set grows 50 MB per batch (the measurement itself is
        # tested on real allocations in tests/evaluators/test_train.py).
        import igcnas.evaluators.train as train_module

        grown = iter(range(0, 10**6, 50))
        monkeypatch.setattr(train_module, "current_rss_mb", lambda: float(next(grown)))
    options = SearchOptions(output_dir=str(tmp_path), n_trials=1, epochs=2, max_batches_per_epoch=5, widths=(8,),
                            blocks=(1,), study="bad", **changes)
    with pytest.raises(SearchFailed, match="trials failed and none completed"):
        run_search(options)
    s = optuna.load_study(study_name="bad", storage=f"sqlite:///{tmp_path / 'bad' / 'study.db'}")
    failed = s.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert len(failed) == 10 and all(reason in record_of(t.user_attrs)["fail_reason"] for t in failed)


@pytest.mark.parametrize("storage_url", [*STORAGE_KINDS, "grpc-sqlite"], indirect=True)
@pytest.mark.slow
def test_dead_workers_trials_are_failed_marked_stale_and_rerun(storage_url, tmp_path):
    """Two dead workers: one killed between taking its trial and the first beat (a RUNNING trial that never
    beat, which Optuna alone never fails: with --total-trials it would hold its slot forever), one killed
    after beating. The next worker fails both, marks them stale and re-queues them; one retry runs."""
    from igcnas.nas.objectives import OBJECTIVES
    from igcnas.nas.records import SystemKey

    name = f"orphan-{uuid.uuid4().hex[:8]}"
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name=name, storage=storage, directions=[o.direction for o in OBJECTIVES])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna: heartbeats are meant for Study.optimize; these workers die
        never_beat, beat_once = study.ask(), study.ask()  # RUNNING, and no heartbeat thread ever runs for them
    storage.record_heartbeat(beat_once._trial_id)
    time.sleep(3.5)
    done = subprocess.run(search_cmd(storage_url, name, tmp_path, "--total-trials", "1", "--no-seed-balanced",
                                     "--max-batches-per-epoch", "5"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    s = load(storage_url, name)
    by_number = {t.number: t for t in s.trials}
    for dead in (never_beat, beat_once):
        assert by_number[dead.number].state == optuna.trial.TrialState.FAIL
        assert by_number[dead.number].system_attrs[SystemKey.STALE] is True
    retries = sorted(t.system_attrs["failed_trial"] for t in s.trials if "failed_trial" in t.system_attrs)
    assert retries == sorted([never_beat.number, beat_once.number])  # each re-queued exactly once
    assert len(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 1
    assert not s.get_trials(states=(optuna.trial.TrialState.RUNNING,))


@pytest.mark.parametrize("storage_url", [*STORAGE_KINDS, "grpc-sqlite"], indirect=True)
@pytest.mark.slow
def test_stale_failure_whose_worker_died_before_requeuing_it_is_requeued_once(storage_url):
    """Optuna fails a stale trial, then re-queues it in a second step; a worker killed between the two
    (seen once in CI) must not lose the trial. An error failure is never re-queued by this repair."""
    from igcnas.nas.objectives import OBJECTIVES
    from igcnas.nas.records import SystemKey

    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name=f"r-{uuid.uuid4().hex[:8]}", storage=storage,
                                directions=[o.direction for o in OBJECTIVES])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lost, errored = study.ask(), study.ask()
    lost.suggest_int("width", 8, 64)
    storage.set_trial_system_attr(lost._trial_id, SystemKey.STALE, True)  # found stale by a worker ...
    study.tell(lost, state=optuna.trial.TrialState.FAIL)  # ... which failed it and died before re-queuing
    errored.suggest_int("width", 8, 64)
    study.tell(errored, state=optuna.trial.TrialState.FAIL)  # failed by its own error: not stale
    time.sleep(1.2)
    for _ in range(2):  # the repair runs at every trial start: the second pass must add nothing
        storage.find_stale_trials(study._study_id)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [(t.system_attrs["failed_trial"], t.params) for t in waiting] == [(lost.number, lost.params)]
    assert SystemKey.STALE not in waiting[0].system_attrs  # the retry does not inherit the stale mark
