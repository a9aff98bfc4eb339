"""The default sampler breeds from parents: heredity, validity, budgets, rung results, pickling."""

import math
import pickle
import random
import re
import warnings

import numpy as np
import optuna
import pytest

from igcnas.nas.selection import crowding_distance, nondominated_ranks
from igcnas.nas.evolution import (EvolutionarySampler,
                                  population_size_for)
from igcnas.nas.records import SystemKey, TrialKey, TrialStatus, record_of
from igcnas.nas.samplers import SAMPLERS, make_sampler
from igcnas.nas.budget import Budget
from igcnas.nas.gene_suggestions import gene_distributions, seed_trial_params, suggest_config
from igcnas.search_space.conditions import check_complementary
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.families import Interleaved, get_family
from igcnas.search_space.genome import Genome
from igcnas.search_space.spec import SearchSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

DIRECTIONS = ["maximize", "minimize", "minimize"]
SPEC = SearchSpec(widths=(8, 16, 24, 32), blocks=(1, 2), input_size=8, in_channels=1)
GENOME = Genome(SPEC)
MOVE = re.compile(r"^(step_stage\(\d,[+-]1\)|step_l\(\d,[+-]1\)|step_width\([+-]1\)|step_blocks\([+-]1\)"
                  r"|set_family\(\w+\))$")


def made_up_accuracy(config):
    """A smooth function of the architecture: bigger networks are more accurate, with diminishing returns."""
    costs = closed_form_costs(config)
    return 1.0 - 1.0 / math.log(costs.params), costs


def attrs_of(config, status=TrialStatus.COMPLETE):
    costs = closed_form_costs(config)
    return {TrialKey.PARAMS: costs.params, TrialKey.MACS: costs.macs, TrialKey.ARCH_ID: arch_id(config),
            TrialKey.STATUS: status}


def seeded_study(sampler, *, n=40, seed=1, genome=GENOME):
    """A study of ``n`` completed trials of random networks of several families."""
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    rng = random.Random(seed)
    distributions = gene_distributions(genome)
    for _ in range(n):
        params = genome.random_params(rng)
        config = genome.decode(params)
        accuracy, costs = made_up_accuracy(config)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  values=[accuracy, costs.params, costs.macs],
                                                  user_attrs=attrs_of(config)))
    assert len({t.params["family"] for t in study.trials}) >= 5
    return study


def trial_params(study, number):
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number)).params


def evolution_record(study, trial):
    return study._storage.get_trial(trial._trial_id).system_attrs.get(SystemKey.EVOLUTION)


def propose(study, n, *, tell=True):
    """Ask ``n`` trials through the define-by-run space; yield (trial, config, evolution record)."""
    for _ in range(n):
        trial = study.ask()
        config = suggest_config(trial, GENOME)
        trial.set_user_attr(TrialKey.ARCH_ID, arch_id(config))
        yield trial, config, evolution_record(study, trial)
        if tell:
            accuracy, costs = made_up_accuracy(config)
            study.tell(trial, [accuracy, costs.params, costs.macs])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)


def assert_complementary(config):
    family = get_family(config.family)
    for i, stage in enumerate(config.stages):
        structure = family.structure(stage, i)
        if isinstance(structure, Interleaved) and config.family in ("dense", "xception", "igcv1", "igcv2"):
            assert check_complementary(structure, stage.width).complementary, (config.family, stage)


def replay(genome, study, record):
    """Rebuild a child from its parents' genes and the recorded moves, independently of the sampler."""
    donor = genome.canonical(trial_params(study, record["parents"][0]))
    child = dict(donor)
    for i, source in enumerate(record["stages"]):
        child[genome.l_gene(i)], child[genome.pos_gene(i)] = genome.stage_genes(
            genome.canonical(trial_params(study, source)), i)
    child = genome.canonical(child)
    for op in record["ops"]:
        if op != "crossover":
            child = genome.canonical(genome.apply_op(child, op))
    return child


def inherited_fraction(genome, study, proposals, min_options=4):
    """Of the stages with at least ``min_options`` options in the child's cell, the fraction whose genes are a
    parent's: putting that parent's stage genes into the child gives the child's stage back."""
    hits = total = 0
    for child, parents in proposals:
        point = genome.locate(child)
        tables = genome.tables(point.family, genome.widths[point.width_index])
        parent_genes = [genome.canonical(trial_params(study, n)) for n in parents]
        for i in range(genome.num_stages):
            if sum(len(options) for options in tables[i].by_l.values()) < min_options:
                continue
            total += 1
            for parent in parent_genes:
                candidate = dict(child)
                candidate[genome.l_gene(i)], candidate[genome.pos_gene(i)] = genome.stage_genes(parent, i)
                if genome.stage_genes(genome.canonical(candidate), i) == genome.stage_genes(child, i):
                    hits += 1
                    break
    assert total > 100
    return hits / total


@pytest.mark.slow
def test_children_inherit_their_stages_from_recorded_parents_over_1000_proposals():
    study = seeded_study(EvolutionarySampler(genome=GENOME, seed=0))
    evolved, ids = [], set(record_of(t.user_attrs)[TrialKey.ARCH_ID] for t in study.trials)
    for trial, config, record in propose(study, 1000):
        closed_form_costs(config)
        assert_complementary(config)
        params = trial.params
        assert set(params) == set(GENOME.gene_names)
        assert GENOME.canonical(params) == params  # children are canonical genes
        assert arch_id(config) not in ids  # never a network the study already tried
        ids.add(arch_id(config))
        if record["parents"]:
            assert set(record["stages"]) <= set(record["parents"]) and len(record["stages"]) == GENOME.num_stages
            assert all(MOVE.match(op) for op in record["ops"] if op != "crossover")
            assert replay(GENOME, study, record) == params  # the stages came from the parents, then the moves
            evolved.append((params, record["parents"]))
    assert len(evolved) > 950
    with_crossover = sum(1 for _, parents in evolved if len(parents) == 2)
    assert with_crossover > 0.8 * len(evolved)
    evolution_fraction = inherited_fraction(GENOME, study, evolved)

    # The same measure for uniform random proposals, against two trials of the recent window as "parents".
    random_study = seeded_study(optuna.samplers.RandomSampler(seed=0))
    rng = random.Random(0)
    proposals = []
    for trial, _config, _record in propose(random_study, 300):
        recent = [t.number for t in random_study.get_trials(deepcopy=False) if t.number != trial.number][-16:]
        proposals.append((GENOME.canonical(trial.params), rng.sample(recent, 2)))
    random_fraction = inherited_fraction(GENOME, random_study, proposals)
    # About 0.82 vs 0.3: evolution changes a stage only by a recorded move (about one per child).
    assert evolution_fraction > 0.7, evolution_fraction
    assert random_fraction < 0.4, random_fraction
    assert evolution_fraction - random_fraction > 0.35


def test_every_gene_is_in_the_relative_search_space_even_for_plain_nsga2():
    study = seeded_study(EvolutionarySampler(genome=GENOME, seed=0), n=20)
    trial = study.trials[-1]
    space = EvolutionarySampler(genome=GENOME).infer_relative_search_space(study, trial)
    assert list(space) == list(GENOME.gene_names)
    # The fixed genes cure the intersection problem: NSGA-II now evolves width, L and pos too.
    nsga2 = optuna.samplers.NSGAIISampler(seed=0).infer_relative_search_space(study, trial)
    assert set(nsga2) == set(GENOME.gene_names)


@pytest.mark.slow
def test_stopped_early_trials_are_parents_by_their_rung_accuracy():
    sampler = EvolutionarySampler(genome=GENOME, seed=0, min_parents=4, window=32)
    study = seeded_study(sampler, n=8)
    distributions = gene_distributions(GENOME)
    rng = random.Random(9)
    numbers = {}
    for name, curve, status in (("best_at_rung", [0.40, 0.99], TrialStatus.STOPPED_EARLY),
                                ("worse_at_rung", [0.99, 0.01], TrialStatus.STOPPED_EARLY),
                                ("over_budget", None, TrialStatus.OVER_BUDGET),
                                ("no_slot", None, TrialStatus.NO_SLOT)):
        config = GENOME.decode(GENOME.random_params(rng))
        attrs = attrs_of(config, status)
        if curve is not None:
            attrs[TrialKey.CURVE] = curve
        if name == "best_at_rung":  # cheaper than everything: with 0.99 at its rung it dominates the study
            attrs[TrialKey.PARAMS], attrs[TrialKey.MACS] = 1, 1
        study.add_trial(optuna.trial.create_trial(params=GENOME.encode(config), distributions=distributions,
                                                  state=optuna.trial.TrialState.PRUNED, user_attrs=attrs))
        numbers[name] = study.trials[-1].number
    failed = GENOME.decode(GENOME.random_params(rng))
    study.add_trial(optuna.trial.create_trial(params=GENOME.encode(failed), distributions=distributions,
                                              state=optuna.trial.TrialState.FAIL, user_attrs=attrs_of(failed)))
    numbers["failed"] = study.trials[-1].number

    from tests.nas.full_scan import finished_trials

    finished = {t.number: values for t, values in finished_trials(GENOME, study, study.trials)}
    assert finished[numbers["best_at_rung"]] == (-0.99, 1.0, 1.0)  # the last accuracy of the curve
    assert finished[numbers["worse_at_rung"]][0] == -0.01
    assert not {numbers["over_budget"], numbers["no_slot"], numbers["failed"]} & set(finished)

    counts: dict[int, int] = {}
    for _trial, _config, record in propose(study, 200, tell=False):  # told as failed: the population stays
        for number in record["parents"]:
            counts[number] = counts.get(number, 0) + 1
    assert counts[numbers["best_at_rung"]] == max(counts.values())
    # 0.99 after its first epoch would put it on the front; 0.01 at the rung where it stopped does not.
    assert counts.get(numbers["worse_at_rung"], 0) < counts[numbers["best_at_rung"]] / 2
    assert not {numbers["over_budget"], numbers["no_slot"], numbers["failed"]} & set(counts)


def test_infeasible_trials_rank_after_feasible_ones():
    sampler = EvolutionarySampler(genome=GENOME, seed=0, min_parents=4)
    study = seeded_study(sampler, n=10)
    config = GENOME.decode(GENOME.random_params(random.Random(3)))
    study.enqueue_trial(GENOME.encode(config))
    trial = study.ask()
    suggest_config(trial, GENOME)
    trial.set_user_attr(TrialKey.ARCH_ID, arch_id(config))
    trial.set_constraint("max_latency_ms", 0.5)
    study.tell(trial, [1.0, 1.0, 1.0])  # dominates every other trial, but breaks a constraint
    assert study.trials[-1].constraints == {"max_latency_ms": 0.5}
    parents = [n for _t, _c, record in propose(study, 100, tell=False) for n in record["parents"]]
    assert parents and trial.number not in parents  # it loses every tournament to a feasible trial


@pytest.mark.slow
def test_no_child_exceeds_the_budget():
    probe = [closed_form_costs(GENOME.decode(GENOME.random_params(random.Random(i)))) for i in range(200)]
    max_params = sorted(c.params for c in probe)[len(probe) // 3]
    max_macs = sorted(c.macs for c in probe)[2 * len(probe) // 3]
    sampler = EvolutionarySampler(genome=GENOME, seed=0, budget_params=max_params, budget_macs=max_macs)
    study = seeded_study(sampler)
    evolved = 0
    for _trial, config, record in propose(study, 300):
        costs = closed_form_costs(config)
        assert costs.params <= max_params and costs.macs <= max_macs, record
        evolved += bool(record["parents"])
    assert evolved > 250


def test_warm_up_draws_new_random_networks_and_enqueued_seeds_are_kept():
    study = optuna.create_study(directions=DIRECTIONS, sampler=EvolutionarySampler(genome=GENOME, seed=0))
    seeds = seed_trial_params(GENOME)
    for params in seeds:
        study.enqueue_trial(params)
    ids = set()
    for params in seeds:
        trial = study.ask()
        config = suggest_config(trial, GENOME)
        assert trial.params == params and evolution_record(study, trial) is None  # fixed genes, used as given
        ids.add(arch_id(config))
        trial.set_user_attr(TrialKey.ARCH_ID, arch_id(config))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    for trial, config, record in propose(study, 30, tell=False):
        assert record["ops"] == ["random"] and record["parents"] == []  # no finished trial yet
        assert arch_id(config) not in ids
        ids.add(arch_id(config))


def test_sampler_pickles_and_goes_on_where_it_was():
    sampler = EvolutionarySampler(genome=GENOME, seed=3, n_trials_hint=100, budget_params=1e6)
    study_a, study_b = seeded_study(sampler), seeded_study(None)
    for _ in propose(study_a, 5):
        pass
    copy = pickle.loads(pickle.dumps(sampler))
    assert (copy.population_size, copy.window, copy.budget_params) == (10, 10, 1e6)
    study_b.sampler = copy
    for trial in study_a.trials[40:]:  # the same history in both studies
        study_b.add_trial(trial)
    a = [t.params for t, _c, _r in propose(study_a, 5)]
    b = [t.params for t, _c, _r in propose(study_b, 5)]
    assert a == b


@pytest.mark.parametrize("kwargs, message", [
    ({"genome": SPEC}, "genome must be a Genome"),
    ({"population_size": 1}, "population_size must be an integer >= 2"),
    ({"n_trials_hint": 0}, "n_trials_hint must be an integer >= 1"),
    ({"window": 1.5}, "window must be an integer >= 2"),
    ({"mutation_rate": 1.5}, "mutation_rate must be a number in"),
    ({"crossover_rate": -0.1}, "crossover_rate must be a number in"),
    ({"family_bias": "high"}, "family_bias must be a number in"),
    ({"budget_params": 0}, "budget_params must be a number > 0"),
    ({"budget_macs": -5}, "budget_macs must be a number > 0"),
    ({"min_parents": 1}, "min_parents must be an integer >= 2"),
    ({"max_tries": 0}, "max_tries must be an integer >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_constructor_names_the_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        EvolutionarySampler(**{"genome": GENOME, **kwargs})


def test_constructor_is_keyword_only_and_sizes_the_population_from_the_budget():
    with pytest.raises(TypeError):
        EvolutionarySampler(GENOME)  # type: ignore[misc]
    assert population_size_for(None) == 16
    assert population_size_for(4) == 8 and population_size_for(100) == 10 and population_size_for(10_000) == 32
    sampler = EvolutionarySampler(genome=GENOME, n_trials_hint=144)
    assert (sampler.population_size, sampler.window, sampler.min_parents) == (12, 12, 6)
    assert sampler.mutation_rate == pytest.approx(1 / len(GENOME.genes))


def test_nondominated_ranks_and_crowding():
    import numpy as np

    points = np.array([[0, 3], [1, 1], [3, 0], [2, 2], [3, 3]], dtype=float)
    assert nondominated_ranks(points).tolist() == [0, 0, 0, 1, 2]
    crowd = crowding_distance(points[:3])
    assert math.isinf(crowd[0]) and math.isinf(crowd[2]) and crowd[1] == pytest.approx(2.0)


def test_make_sampler_defaults_to_evolution_and_keeps_the_plain_samplers():
    assert SAMPLERS[0] == "evolution"
    budget = Budget(max_params=5e5, max_macs=None)
    sampler = make_sampler("evolution", 0, spec=SPEC, budget=budget, n_trials=100)
    assert isinstance(sampler, EvolutionarySampler)
    assert (sampler.budget_params, sampler.budget_macs, sampler.population_size) == (5e5, None, 10)
    with pytest.raises(ValueError, match="needs the search space"):
        make_sampler("evolution", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the experimental multivariate TPE must not warn on every run
        tpe = make_sampler("tpe", 0)
    assert tpe._multivariate and tpe._group
    assert isinstance(make_sampler("nsga2", 0), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("random", 0), optuna.samplers.RandomSampler)
    with pytest.raises(ValueError, match="sampler must be one of evolution"):
        make_sampler("annealing", 0)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.slow
def test_every_sampler_survives_the_pickling_ray_tune_does_and_keeps_sampling(name, tmp_path):
    """Tune pickles OptunaSearch with its sampler (Optuna 5.1's NSGA-II holds a thread lock that does not pickle).

    Pickled after a few trials, written to a file and loaded in a fresh interpreter, each sampler must go on
    proposing networks of the same study: the copy has working locks of its own.
    """
    import subprocess
    import sys

    import ray.cloudpickle

    storage = f"sqlite:///{tmp_path / 's.db'}"
    sampler = make_sampler(name, 0, spec=SPEC, n_trials=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(study_name="p", storage=storage, sampler=sampler, directions=["minimize"] * 2)
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=3)
    (tmp_path / "sampler.pkl").write_bytes(ray.cloudpickle.dumps(sampler))
    code = (f"import pickle, optuna; s = pickle.load(open({str(tmp_path / 'sampler.pkl')!r}, 'rb'));"
            f"st = optuna.load_study(study_name='p', storage={storage!r}, sampler=s);"
            "st.optimize(lambda t: (t.suggest_float('x', 0, 1), t.suggest_float('y', 0, 1)), n_trials=3);"
            "print(type(s).__name__, len(st.trials))")
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [type(sampler).__name__, "6"]


def test_one_dominance_relation_for_sets_and_within_a_set():
    """selection.dominates is the relation everything ranks by (the rung rule, the sampler's fronts): checked
    against the definition written out pair by pair, with ties and duplicates."""
    from igcnas.nas.selection import dominance_matrix, dominates

    rng = np.random.default_rng(5)
    a = rng.integers(0, 3, size=(40, 3)).astype(float)  # few values: many ties and duplicates
    b = rng.integers(0, 3, size=(25, 3)).astype(float)
    expected = np.array([[all(x <= y) and any(x < y) for y in b] for x in a])
    assert (dominates(a, b) == expected).all()
    assert (dominance_matrix(a) == dominates(a, a)).all() and not dominance_matrix(a).diagonal().any()
    assert dominates(a[:0], b).shape == (0, 25)
