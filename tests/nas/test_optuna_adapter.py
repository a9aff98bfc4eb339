"""The Optuna adapter's contract, over every storage kind a search opens: in memory, SQLite, PostgreSQL,
a journal file and the gRPC proxy. An Optuna release that moves one of the internals it reaches fails
here, by name, instead of slowing or breaking a search far away (a silent fallback is a failure too)."""

import math
import os
import socket
import time

import numpy as np
import optuna
import pytest

from igcnas.nas.budget import named_constraints, record_constraints
from igcnas.nas.optuna_adapter import (CONSTRAINTS_KEY, compute_hypervolume, rdb_flagged_failures,
                                       rdb_running_with_heartbeat, read_by_number, set_trial_system_attr,
                                       storage_of, study_id_of, trial_id_of)
from igcnas.nas.study import open_storage
from tests.nas.conftest import grpc_proxy_over

optuna.logging.set_verbosity(optuna.logging.WARNING)
PG_URL = os.environ.get("IGCNAS_TEST_POSTGRES", "postgresql+psycopg2://igcnas:igcnas@127.0.0.1:5432/igcnas")
KINDS = ["memory", "sqlite", "postgresql", "journal", "grpc"]
STATES = optuna.trial.TrialState


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=KINDS)
def two_handles(request, tmp_path):
    """A study and a second handle on it (another worker), on each storage kind."""
    kind, server, name = request.param, None, f"adapter-{os.getpid()}-{time.monotonic_ns()}"
    if kind == "memory":
        study = optuna.create_study(directions=["maximize", "minimize"])
        yield kind, study, study
        return
    if kind == "postgresql" and not _postgres_up():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (.ci/postgres-up starts one)")
    url = PG_URL if kind == "postgresql" else f"sqlite:///{tmp_path / 'study.db'}"
    if kind == "journal":
        def storage():
            return open_storage(f"journal://{tmp_path / 'study.log'}", heartbeat=False)
    elif kind == "grpc":
        server, storage = grpc_proxy_over(url)
    else:
        def storage():
            return open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=name, storage=storage(), directions=["maximize", "minimize"])
    yield kind, study, optuna.load_study(study_name=name, storage=storage())
    if server is not None:
        server.stop(0)
    if kind == "postgresql":
        optuna.delete_study(study_name=name, storage=open_storage(url, heartbeat=False))


def _grow(study, other):
    """Finished trials from both handles, a waiting one, two running ones (one of them finished later)."""
    dist = {"x": optuna.distributions.IntDistribution(0, 9)}
    for i, handle in enumerate((study, other, study, other)):
        handle.add_trial(optuna.trial.create_trial(state=STATES.COMPLETE, params={"x": i}, distributions=dist,
                                                   values=[0.5 + i / 10, i], user_attrs={"i": i}))
    other.enqueue_trial({"x": 7})
    running = [other.ask(fixed_distributions=dist), other.ask(fixed_distributions=dist)]
    running[0].set_user_attr("progress", 1)
    return running


def test_ids_and_storage_agree_with_the_public_storage_api(two_handles):
    kind, study, other = two_handles
    _grow(study, other)
    storage = storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert storage.get_study_id_from_name(study.study_name) == study_id_of(study)
    for t in study.get_trials(deepcopy=False):
        assert storage.get_trial_id_from_study_id_trial_number(study_id_of(study), t.number) == trial_id_of(t)


def test_reading_by_number_is_the_public_read_filtered(two_handles):
    kind, study, other = two_handles
    running = _grow(study, other)
    storage, study_id = storage_of(study), study_id_of(study)
    for start, unfinished in ((0, set()), (3, {1}), (5, {4}), (7, set()), (2, {0, 1})):
        got = read_by_number(storage, study_id, start, unfinished)
        assert got is not None, f"{kind}: the storage's own copy is no longer reachable"
        public = {t.number: t for t in study.get_trials(deepcopy=False)}
        expected = sorted(n for n in public if n >= start or n in unfinished)
        assert [t.number for t in got] == expected
        assert [(t.state, t.user_attrs, t.params) for t in got] == [
            (public[n].state, public[n].user_attrs, public[n].params) for n in expected]
    other.tell(running[0], [0.9, 1.0])  # another worker's write is seen on the next read
    assert read_by_number(storage, study_id, running[0].number, set())[0].state == STATES.COMPLETE


def test_system_attributes_and_constraints_written_through_the_adapter_read_back_publicly(two_handles):
    kind, study, other = two_handles
    trial = study.ask()
    set_trial_system_attr(study, trial, "igcnas:test", {"a": 1})
    record_constraints(trial, {"max_macs": -0.5, "max_params": 0.25}, already={})
    record_constraints(trial, {"max_latency_ms": 0.125}, already={"max_macs": -0.5, "max_params": 0.25})
    study.tell(trial, [0.5, 1.0])
    frozen = other.get_trials(deepcopy=False)[-1]
    assert frozen.system_attrs["igcnas:test"] == {"a": 1}
    assert frozen.system_attrs[CONSTRAINTS_KEY] == [0.25, -0.5, 0.125]
    assert named_constraints(frozen.constraints) == {"max_params": 0.25, "max_macs": -0.5, "max_latency_ms": 0.125}


@pytest.mark.parametrize("two_handles", ["sqlite", "postgresql"], indirect=True)
def test_rdb_queries_find_heartbeats_and_flagged_failures(two_handles):
    _, study, _ = two_handles
    storage = storage_of(study)
    rdb = storage._backend if hasattr(storage, "_backend") else storage  # the RDB behind Optuna's cache
    beating, silent, flagged, plain = (study.ask() for _ in range(4))
    rdb.record_heartbeat(trial_id_of(beating))
    set_trial_system_attr(study, flagged, "igcnas:flag", True)
    study.tell(flagged, state=STATES.FAIL)
    study.tell(plain, state=STATES.FAIL)
    set_trial_system_attr(study, silent, "retry_history", [flagged.number])
    assert rdb_running_with_heartbeat(rdb, study_id_of(study)) == [trial_id_of(beating)]
    failed, retried = rdb_flagged_failures(rdb, study_id_of(study), "igcnas:flag", "retry_history")
    assert failed == [(trial_id_of(flagged), flagged.number)] and retried == {flagged.number}


def test_hypervolume_is_the_area_dominated_below_the_reference():
    ref = np.array([1.0, 1.0])
    assert compute_hypervolume(np.array([[0.5, 0.5]]), ref) == pytest.approx(0.25)
    assert compute_hypervolume(np.array([[0.0, 0.5], [0.5, 0.0], [0.6, 0.6]]), ref) == pytest.approx(0.75)
    assert compute_hypervolume(np.array([[0.0, 0.5], [0.5, 0.0]]), ref, assume_pareto=True) == pytest.approx(0.75)
    assert math.isclose(compute_hypervolume(np.array([[0.25, 0.25, 0.25]]), np.ones(3)), 0.75 ** 3)
