"""The trial record: one typed declaration, refused when written wrong, read back the same way from trials
written whole or (by older releases) key by key, and written once per phase of a trial."""

import collections

import optuna
import pytest

from igcnas.nas.records import (RECORD_ATTR, TrialKey, TrialRecorder, TrialStatus, check_record, record_of,
                                rewrite_record)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("key", list(TrialKey))
def test_every_key_declares_the_kinds_it_takes_and_refuses_others(key):
    assert key.kind and all(isinstance(k, type) for k in key.kind)
    example = {int: 3, float: 0.5, str: "x", list: [1], tuple: (1,), dict: {"a": 1}}
    wrong = next(v for t, v in example.items() if not any(issubclass(t, k) for k in key.kind))
    assert check_record({key: None}) == {key.value: None}  # unknown or not applicable
    with pytest.raises(ValueError, match=f"trial record key '{key.value}': expected"):
        check_record({key: wrong})


def test_a_stray_key_or_a_bool_for_a_number_is_refused_by_name():
    with pytest.raises(ValueError, match="'latency_thread' is not a trial record key"):
        check_record({"latency_thread": 1})
    with pytest.raises(ValueError, match="'params': expected int"):
        check_record({TrialKey.PARAMS: True})
    assert check_record({TrialKey.CURVE: (0.5, 0.75)}) == {"curve": [0.5, 0.75]}  # stored as JSON stores it


def test_records_written_whole_and_key_by_key_read_back_alike():
    flat = {"status": "complete", "params": 10, "curve": [0.5], "not_ours": 1}
    assert record_of(flat) == {"status": "complete", "params": 10, "curve": [0.5]}
    packed = {RECORD_ATTR: {"status": "complete", "params": 10, "curve": [0.5]}, "not_ours": 1}
    assert record_of(packed) == record_of(flat)
    # A trial re-queued from an old one carries both: the packed record is the newer.
    assert record_of({**flat, RECORD_ATTR: {"status": "failed"}})["status"] == "failed"
    assert record_of({}) == {}


def test_the_recorder_writes_the_whole_record_in_one_call_per_write():
    study = optuna.create_study()
    trial = study.ask()
    calls = []
    trial.set_user_attr = lambda key, value: calls.append((key, value))  # what reaches the storage
    record = TrialRecorder(trial)
    record.update(params=5, macs=50).update({TrialKey.CURVE: [0.25]})
    assert calls == []  # held in memory until written
    record.write(status=TrialStatus.RUNNING)
    record.write_progress()  # within progress_seconds of the last write: not written
    assert calls == [(RECORD_ATTR, {"params": 5, "macs": 50, "curve": [0.25], "status": "running"})]
    record.progress_seconds = 0.0
    record.update(curve=[0.25, 0.5])
    record.write_progress()
    assert len(calls) == 2 and calls[-1][1]["curve"] == [0.25, 0.5]


def test_a_record_rewritten_by_another_process_keeps_what_was_recorded():
    study = optuna.create_study()
    trial = study.ask()
    TrialRecorder(trial).write(arch_id="a", status=TrialStatus.RUNNING)
    frozen = study.trials[0]
    rewrite_record(study._storage, frozen._trial_id, frozen.user_attrs,
                   {TrialKey.STATUS: TrialStatus.FAILED, TrialKey.FAIL_REASON: "driver gone"})
    assert record_of(study.trials[0].user_attrs) == {"arch_id": "a", "status": "failed", "fail_reason": "driver gone"}


def test_a_search_writes_its_record_once_per_phase_and_nothing_beside_it(tmp_path, monkeypatch):
    """The Optuna backend's trial (rungs at epochs 1 and 3 of 4): the record when chosen, at each rung, at the
    end; no other user attribute. Before the record layer a trial wrote one attribute per key (30 calls)."""
    from igcnas.nas.backends import optuna_backend
    from igcnas.nas.options import SearchOptions
    from igcnas.nas.orchestrator import prepare

    writes: collections.Counter = collections.Counter()
    original = optuna.trial.Trial.set_user_attr

    def counted(self, key, value):
        writes[self.number] += 1
        original(self, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", counted)
    options = SearchOptions(storage=f"sqlite:///{tmp_path / 's.db'}", study="s", output_dir=str(tmp_path),
                            n_trials=4, epochs=4, min_epochs=1, eta=3, max_batches_per_epoch=2, save_weights=False,
                            seed_balanced=False)
    prep = prepare(options)
    objective = optuna_backend.make_objective(prep)
    prep.study.sampler = prep.sampler()
    prep.study.optimize(objective, n_trials=4, catch=(Exception,))
    trials = prep.study.trials
    assert {k for t in trials for k in t.user_attrs} == {RECORD_ATTR}
    for t in trials:
        record = record_of(t.user_attrs)
        rungs_passed = len(record.get(TrialKey.RUNGS, {}))
        assert writes[t.number] == 1 + rungs_passed + 1, (t.number, record.get(TrialKey.STATUS), writes)
        assert record[TrialKey.STATUS] in (TrialStatus.COMPLETE, TrialStatus.STOPPED_EARLY)
