"""Incremental reads of a study give what full scans give: rung peers and decisions, the sampler's view,
the --total-trials counts, and whole searches (same proposals, same promotions, same stops)."""

import random

import optuna
import pytest
import scale_parts as bench  # bench/scale_parts.py: the synthetic trial and fast preload the tests drive

from tests.nas import full_scan
from tests.nas.conftest import grpc_proxy_over

from igcnas.nas.records import record_of
from igcnas.nas.backends import optuna_backend
from igcnas.nas.early_stopping import RungEntry, RungIndex, fidelity_key, rung_peers, should_promote
from igcnas.nas.evolution import EvolutionarySampler
from igcnas.nas.objectives import objectives_for
from igcnas.nas.population import StudyView, TrialFeed
from igcnas.nas.gene_suggestions import gene_distributions
from igcnas.nas.study import open_storage, open_study
from igcnas.search_space.genome import Genome
from igcnas.search_space.spec import SearchSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

FIDELITY = fidelity_key(epochs=9, batch_size=64, lr=0.05, max_batches_per_epoch=None,
                      recalibrate_plain=True)
OTHER = fidelity_key(epochs=3, batch_size=64, lr=0.05, max_batches_per_epoch=None,
                      recalibrate_plain=True)
GENOME = Genome(SearchSpec(widths=(8, 16, 24, 32), blocks=(1, 2), input_size=8, in_channels=1))
DISTRIBUTIONS = gene_distributions(GENOME)
STATES = optuna.trial.TrialState


@pytest.fixture(params=["sqlite", "journal", "grpc", "memory"])
def handles(request, tmp_path):
    """The study as this process reads it, and a second handle on it (another worker's writes): on an RDB
    storage (Optuna's cache), a journal file, a gRPC proxy (over SQLite) and in memory."""
    directions = [o.direction for o in objectives_for(latency=False)]
    kind, server = request.param, None
    if kind == "memory":
        study = optuna.create_study(directions=directions)
        yield study, study
        return
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        def storage():
            return optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.log")))
    elif kind == "grpc":
        server, storage = grpc_proxy_over(f"sqlite:///{tmp_path / 'study.db'}")
    else:
        def storage():
            return open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=False)
    study = optuna.create_study(study_name="s", storage=storage(), directions=directions)
    yield study, optuna.load_study(study_name="s", storage=storage())
    if server is not None:
        server.stop(0)


def attrs(rng, fidelity, epochs):
    """Rung-relevant attributes; small pools of costs and two-decimal accuracies make ties common."""
    params = GENOME.random_params(rng)
    out = {"fidelity": fidelity, "params": rng.choice([1000, 2000, 3000, 5000]),
           "macs": rng.choice([10_000, 20_000, 40_000]), "curve": [round(rng.random(), 2) for _ in range(epochs)],
           "arch_id": GENOME.arch_id(GENOME.locate(params)), "status": "stopped_early"}
    return params, out


def grow(study, other, rng, running, step):
    """One step of a search: finished trials of several kinds added by both handles, running trials
    started, some of them growing their curves, some finishing."""
    for handle in (study, other):
        for _ in range(rng.randint(1, 4)):
            params, a = attrs(rng, FIDELITY if rng.random() < 0.85 else OTHER, rng.choice([1, 1, 3, 4, 9]))
            state = rng.choice([STATES.PRUNED, STATES.PRUNED, STATES.COMPLETE, STATES.FAIL])
            if state == STATES.COMPLETE:
                a["status"] = "complete"
            if rng.random() < 0.1:
                del a["params"]  # a trial that never recorded its costs is nobody's peer
            handle.add_trial(optuna.trial.create_trial(
                state=state, params=params, distributions=DISTRIBUTIONS, user_attrs=a,
                values=[a["curve"][-1], float(a.get("params", 1)), float(a["macs"])] if state == STATES.COMPLETE
                else None))
    if step % 3 == 0:
        other.enqueue_trial(GENOME.random_params(rng))  # a waiting trial
    for _ in range(rng.randint(0, 2)):
        trial = other.ask(fixed_distributions=DISTRIBUTIONS)
        params, a = attrs(rng, FIDELITY, 0)
        for key, value in a.items():
            trial.set_user_attr(key, value)
        running.append((trial, a))
    for trial, a in list(running):
        if rng.random() < 0.5:
            a["curve"] = a["curve"] + [round(rng.random(), 2)]
            trial.set_user_attr("curve", a["curve"])
        if rng.random() < 0.25:
            other.tell(trial, state=STATES.PRUNED)
            running.remove((trial, a))


@pytest.mark.slow
def test_incremental_rung_peers_and_decisions_match_the_full_scan(handles):
    study, other = handles
    rng = random.Random(7)
    index, feed, running = RungIndex(FIDELITY, 3), TrialFeed(study), []
    for step in range(14):
        grow(study, other, rng, running, step)
        index.update(*feed.read())
        trials = study.get_trials(deepcopy=False)
        finished = [t.number for t in trials if t.state.is_finished()]
        excludes = {None, rng.choice(finished)} | ({running[0][0].number} if running else set())
        for epoch in ((1, 3) if step >= 5 else (1,)):  # rung 3 first asked mid-way: built from what is there
            for exclude in excludes:
                peers = rung_peers(trials, FIDELITY, epoch, exclude=exclude)
                assert index.peers(epoch, exclude=exclude) == peers
                for _ in range(3):
                    own = RungEntry(round(rng.random(), 2), rng.choice([1000, 2000, 5000]),
                                    rng.choice([10_000, 40_000]))
                    expected = (*should_promote(own, peers, 3), len(peers) + 1)
                    assert index.decide(own, epoch, exclude=exclude) == expected
    assert len(index.peers(1)) > 40  # the rung grew well past a handful


@pytest.mark.slow
def test_feed_returns_each_trial_once_finished_and_the_unfinished_as_they_are(handles):
    study, other = handles
    rng = random.Random(3)
    fast, public, running = TrialFeed(study), TrialFeed(study, storage_copy=False), []
    seen = {"fast": [], "public": []}
    for step in range(10):
        grow(study, other, rng, running, step)
        now = {t.number: t for t in study.get_trials(deepcopy=False)}
        for name, feed in (("fast", fast), ("public", public)):
            finished, unfinished = feed.read()
            seen[name] += [t.number for t in finished]
            assert all(now[t.number].state.is_finished() for t in finished)
            assert [t.number for t in unfinished] == sorted(n for n, t in now.items() if not t.state.is_finished())
            assert [t.user_attrs for t in unfinished] == [now[t.number].user_attrs for t in unfinished]
        assert seen["fast"] == seen["public"]
        assert sorted(seen["fast"]) == sorted(n for n, t in now.items() if t.state.is_finished())
        assert len(set(seen["fast"])) == len(seen["fast"])  # never twice


@pytest.mark.parametrize("handles", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_sampler_view_matches_the_full_scan(handles):
    study, other = handles
    rng = random.Random(11)
    view, running = StudyView(GENOME, study), []
    for step in range(10):
        grow(study, other, rng, running, step)
        view.refresh()
        trials = study.get_trials(deepcopy=False)
        current = running[-1][0].number if running else -1
        full = full_scan.tried_architectures(GENOME, trials, current)
        probes = full | {GENOME.arch_id(GENOME.locate(GENOME.random_params(rng))) for _ in range(30)}
        tried = view.tried(current)
        assert {a for a in probes if a in tried} == full
        parents = full_scan.finished_trials(GENOME, study, trials)
        assert view.parent_count == len(parents)
        assert [(t.number, v) for t, v in view.parents(12)] == [(t.number, v) for t, v in parents[-12:]]


@pytest.mark.parametrize("handles", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_trial_counts_match_the_full_scan(handles):
    study, other = handles
    rng = random.Random(5)
    running = []
    for step in range(8):
        grow(study, other, rng, running, step)
        probe = study.ask()  # the checks run inside a trial
        counts = optuna_backend._TrialCounts.of(study)
        complete = len(study.get_trials(deepcopy=False, states=(STATES.COMPLETE,)))
        assert counts.complete() == complete
        for target in (complete, complete + len(running), complete + len(running) + 1):
            expected = full_scan.taken_before(study, probe.number) < target
            assert optuna_backend._has_slot(probe, target) == expected
        study.tell(probe, state=STATES.FAIL)


def seeded_copies(tmp_path, n=40):
    """Two SQLite studies with the same history of finished trials."""
    rng = random.Random(2)
    trials = []
    for _ in range(n):
        params = GENOME.random_params(rng)
        costs = GENOME.costs(GENOME.locate(params))
        accuracy = round(rng.random(), 3)
        trials.append(optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS,
                                                values=[accuracy, float(costs[0]), float(costs[1])],
                                                user_attrs={"arch_id": GENOME.arch_id(GENOME.locate(params)),
                                                            "status": "complete"}))
    studies = []
    for name in ("a", "b"):
        storage = open_storage(f"sqlite:///{tmp_path / (name + '.db')}", heartbeat=False)
        study = open_study(storage, name, create=True, objectives=objectives_for(latency=False))
        study.add_trials(trials)
        studies.append(study)
    return studies


@pytest.mark.slow
def test_the_sampler_proposes_the_same_children_either_way(tmp_path):
    proposals = []
    for study, view in zip(seeded_copies(tmp_path), (StudyView, full_scan.FullScanView)):
        study.sampler = EvolutionarySampler(genome=GENOME, seed=4, n_trials_hint=60, view=view)
        rng, made = random.Random(9), []
        for _ in range(25):
            trial = study.ask()
            params = {name: trial.suggest_categorical(name, d.choices) if hasattr(d, "choices")
                      else trial.suggest_int(name, d.low, d.high) if isinstance(d, optuna.distributions.IntDistribution)
                      else trial.suggest_float(name, d.low, d.high) for name, d in DISTRIBUTIONS.items()}
            trial.set_user_attr("arch_id", GENOME.arch_id(GENOME.locate(params)))
            made.append(params)
            if rng.random() < 0.3:  # stopped early at a rung: a parent by its rung result
                trial.set_user_attr("status", "stopped_early")
                trial.set_user_attr("params", 1000)
                trial.set_user_attr("macs", 10_000)
                trial.set_user_attr("curve", [round(rng.random(), 3)])
                study.tell(trial, state=STATES.PRUNED)
            else:
                study.tell(trial, [round(rng.random(), 3), 1000.0 * rng.randint(1, 9), 1e4 * rng.randint(1, 9)])
        proposals.append(made)
    assert proposals[0] == proposals[1]


@pytest.mark.slow
def test_a_search_promotes_and_stops_the_same_trials_either_way(tmp_path):
    """The real objective (sampler, genome, budget, rung checks, records) with the benchmark's synthetic
    training, on two copies of a preloaded study: the incremental reads change no outcome."""
    outcomes = []
    for scan in (False, True):
        url = f"sqlite:///{tmp_path / f'search{scan}.db'}"
        bench.preload(url, "scale", 150, seed=1)
        options = bench.search_options(url, "scale", str(tmp_path), n_trials=24, max_params=60_000)
        storage = open_storage(url, heartbeat=False)
        study = open_study(storage, "scale", create=False)
        spec = SearchSpec.for_data(in_channels=1, input_size=8, num_classes=10)
        from igcnas.nas.backends import PreparedSearch
        from igcnas.nas.pareto import ReferencePoint
        from igcnas.search_space.genome import genome_for

        prep = PreparedSearch(options, spec, genome_for(spec), None, storage, study, ReferencePoint(1e6, 1e7),
                        frozenset(range(150)), evaluate=bench.SyntheticTraining(0.0))
        study.sampler = prep.sampler()
        check = None
        if scan:
            study.sampler.view = full_scan.FullScanView
            check = full_scan.full_scan_rung_check(options.fidelity, options.rung_schedule.eta)
        study.optimize(optuna_backend.make_objective(prep, rung_check=check), n_trials=24, catch=(Exception,))
        records = [record_of(t.user_attrs) for t in study.trials[150:]]
        outcomes.append([(t.params, t.state, r.get("status"), r.get("stop_reason"), r.get("curve"))
                         for t, r in zip(study.trials[150:], records)])
    statuses = {o[2] for o in outcomes[0]}
    assert {"stopped_early", "complete"} <= statuses, statuses
    assert outcomes[0] == outcomes[1]


def test_bench_preload_writes_what_add_trials_writes(tmp_path):
    import datetime

    trials = bench.synthetic_trials(30, seed=3, fidelity=FIDELITY, start=datetime.datetime(2025, 1, 1))
    read = []
    for name, write in (("slow", None), ("fast", bench.bulk_add_trials)):
        storage = open_storage(f"sqlite:///{tmp_path / (name + '.db')}", heartbeat=False)
        study = open_study(storage, "s", create=True, objectives=objectives_for(latency=False))
        if write is None:
            study.add_trials(trials)
        else:
            write(storage, study._study_id, trials)
        read.append(open_study(open_storage(f"sqlite:///{tmp_path / (name + '.db')}", heartbeat=False), "s",
                               create=False).get_trials(deepcopy=False))
    fields = ("number", "state", "values", "params", "distributions", "user_attrs", "system_attrs",
              "datetime_start", "datetime_complete", "intermediate_values")
    assert [[getattr(t, f) for f in fields] for t in read[0]] == [[getattr(t, f) for f in fields] for t in read[1]]
    assert {record_of(t.user_attrs)["status"] for t in read[1]} >= {"stopped_early", "complete"}


def test_bench_counts_the_trials_whole_reads_bring_back(tmp_path):
    """The benchmark's "trials re-read" figure, read off the SQL it sees: a read of whole trials counts
    every trial it brings back; looking up one trial (a write's, ``get_trial``) counts none."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    bench.preload(url, "s", 30)
    storage = open_storage(url, heartbeat=False)
    counter = bench.Statements(storage.engine)
    study_id = storage.get_study_id_from_name("s")
    assert len(storage.get_all_trials(study_id, deepcopy=False)) == 30 and counter.reread == 30
    trial_id = storage.create_new_trial(study_id)
    storage.set_trial_user_attr(trial_id, "x", 1)
    storage.get_trial(trial_id)
    assert counter.reread == 30 and counter.count > 3
    assert len(storage.get_all_trials(study_id, deepcopy=False, states=(STATES.RUNNING,))) == 1
    assert counter.reread == 31


@pytest.mark.parametrize("handles", ["sqlite"], indirect=True)
def test_trials_frame_keeps_finished_rows_and_rebuilds_the_rest(handles, tmp_path):
    from igcnas.nas.pareto import trials_frame

    study, other = handles
    rng = random.Random(4)
    running = []
    for step in range(4):
        grow(study, other, rng, running, step)
        kept = trials_frame(study)  # rows of finished trials come from this process's earlier calls
        fresh = trials_frame(optuna.load_study(study_name="s", storage=open_storage(
            f"sqlite:///{tmp_path / 'study.db'}", heartbeat=False)))
        assert kept.equals(fresh)
    assert (kept["state"] == "RUNNING").any() and (kept["state"] == "COMPLETE").any()
