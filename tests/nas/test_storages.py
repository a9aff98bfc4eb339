"""Storage URLs besides SQLAlchemy's (journal files, the gRPC proxy), `igc-nas storage-proxy`, and the
dead-worker recovery's races, all on real storages and real processes."""

import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings

import optuna
import pytest

from igcnas.cli import main
from igcnas.errors import BadInput
from igcnas.nas.objectives import OBJECTIVES
from igcnas.nas.records import SystemKey, TrialKey
from igcnas.nas.storage import FlockLock
from igcnas.nas.study import open_storage
from tests.nas.test_reliability import (  # noqa: F401 - fixtures
    QUICK,
    free_port,
    load,
    needs_postgres,
    pg_proxy,
    start_proxy,
    stop_proxy,
    storage_url,
)

DIRECTIONS = [o.direction for o in OBJECTIVES]


@pytest.mark.slow
def test_bad_storage_urls_are_one_line_bad_input_and_create_nothing(tmp_path):
    not_a_journal = tmp_path / "study.db"
    not_a_journal.write_bytes(b"SQLite format 3\x00" + bytes(range(256)))
    cases = [
        ("journal://relative/study.log", "absolute or ~ path"),
        (f"journal://{tmp_path}/missing/study.log", "does not exist"),
        (f"journal://{tmp_path}", "is a folder"),
        (f"journal://{not_a_journal}", "cannot be opened as an Optuna journal file"),
        ("grpc://127.0.0.1", "grpc://HOST:PORT"),
        ("grpc://127.0.0.1:13000/study", "grpc://HOST:PORT"),
        (f"grpc://127.0.0.1:{free_port()}", "no storage proxy answers"),
        ("nosuchdb://x", "cannot be opened"),
    ]
    for url, reason in cases:
        with pytest.raises(BadInput, match=reason) as caught:
            open_storage(url)
        assert "\n" not in str(caught.value), url
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


def test_search_with_a_bad_journal_url_exits_2_on_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["search", "--storage", "journal://runs/study.log", "--output-dir", str(out), *QUICK])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("igc-nas: error: storage URL") and "\n" not in err
    assert not out.exists()
    missing = tmp_path / "typo.log"
    assert main(["trials", "--storage", f"journal://{missing}", "--study", "x"]) == 2  # reading creates no file
    assert "does not exist" in capsys.readouterr().err and not missing.exists()


@pytest.mark.slow
def test_journal_file_serves_many_worker_processes_exactly(tmp_path, capsys):
    url, study, target = f"journal://{tmp_path / 'study.log'}", "many", 5
    procs = [subprocess.Popen([sys.executable, "-m", "igcnas.cli", "search", "--storage", url, "--study", study,
                               "--output-dir", str(tmp_path / f"w{i}"), *QUICK, "--max-batches-per-epoch", "5",
                               "--total-trials", str(target), "--sampler-seed", str(i)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
    s = load(url, study)
    numbers = [t.number for t in s.trials]
    assert len(numbers) == len(set(numbers))
    assert len(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == target
    assert not s.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert main(["trials", "--storage", url, "--study", study]) == 0  # the reading commands take the URL too
    assert capsys.readouterr().out.count("\n") > target


@pytest.mark.parametrize("storage_url", ["journal", pytest.param("postgresql", marks=needs_postgres),
                                         pytest.param("grpc-postgresql", marks=needs_postgres)], indirect=True)
@pytest.mark.slow
def test_workers_that_find_one_stale_trial_together_fail_and_requeue_it_once(storage_url):  # noqa: F811
    """Each thread is a worker with its own connection; all look for stale trials at the same moment."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    first = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name=name, storage=first, directions=DIRECTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dead = study.ask()
    dead.suggest_int("width", 8, 64)
    time.sleep(2.5)
    workers = [optuna.load_study(study_name=name, storage=open_storage(storage_url, heartbeat_interval=1,
                                                                       grace_period=2)) for _ in range(4)]
    barrier, errors = threading.Barrier(len(workers)), []

    def look(worker: optuna.Study) -> None:
        barrier.wait()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(worker)
        except Exception as exc:  # noqa: BLE001 - any error of a worker fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=look, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    trials = load(storage_url, name).trials
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    assert trials[dead.number].system_attrs[SystemKey.STALE] is True
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.WAITING
    assert retries[0].params == dead.params


def test_a_killed_journal_writer_does_not_hold_the_lock(tmp_path):
    path = str(tmp_path / "study.log")
    code = (f"import time; from igcnas.nas.storage import FlockLock; FlockLock({path!r}).acquire(); "
            "print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock, start = FlockLock(path), time.monotonic()
    got = []
    waiter = threading.Thread(target=lambda: got.append(lock.acquire()), daemon=True)
    waiter.start()
    waiter.join(timeout=5)
    assert got == [True] and time.monotonic() - start < 5
    lock.release()


def test_journal_storage_pickles_for_ray_and_beats_with_a_lease(tmp_path):
    url = f"journal://{tmp_path / 'study.log'}"
    storage = open_storage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="p", storage=storage, directions=["maximize"])
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert all(isinstance(t.system_attrs[SystemKey.LEASE], float) for t in study.trials)  # beaten while running
    copy = pickle.loads(pickle.dumps(storage))
    assert len(optuna.load_study(study_name="p", storage=copy).trials) == 2
    assert copy.get_heartbeat_interval() == 1


def test_storage_proxy_help_says_when_to_use_it(capsys):
    with pytest.raises(SystemExit) as done:
        main(["storage-proxy", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "grpc://HOST:PORT" in out and "thousands" in out


def test_storage_proxy_refuses_what_it_cannot_serve(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        db = f"sqlite:///{tmp_path / 'p.db'}"
        for argv, reason in [
            (["--storage", f"journal://{tmp_path / 'x.log'}", "--port", "13000"], "must be a database URL"),
            (["--storage", db, "--port", "0"], "--port must be between 1 and 65535"),
            (["--storage", db, "--port", str(taken)], "cannot listen there"),
            (["--storage", f"sqlite:///{tmp_path / 'missing' / 'p.db'}", "--port", str(free_port())],
             "does not exist"),
        ]:
            assert main(["storage-proxy", *argv]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("igc-nas: error:") and reason in err and "\n" not in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_storage_proxy_serves_a_study_and_ctrl_c_stops_it_cleanly(tmp_path):
    db = f"sqlite:///{tmp_path / 'served.db'}"
    proc, url = start_proxy(db)
    try:
        study = optuna.create_study(study_name="served", storage=open_storage(url, heartbeat_interval=1,
                                                                              grace_period=3),
                                    directions=["maximize"])
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
        assert all(SystemKey.LEASE in t.system_attrs for t in study.trials)  # beaten through the proxy
    finally:
        err = stop_proxy(proc)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert f"grpc://127.0.0.1:{url.rsplit(':', 1)[1]}" in err  # it said where workers connect
    direct = optuna.load_study(study_name="served", storage=db)
    assert len(direct.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
