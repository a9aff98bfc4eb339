import optuna
import pytest

from igcnas.nas.budget import Budget, parse_count
from igcnas.nas.gene_suggestions import genome_for, seed_trial_params, suggest_config
from igcnas.search_space.spec import SearchSpec, space_bounds
from igcnas.search_space.conditions import check_complementary
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.families import get_family
from igcnas.search_space.genome import Genome
from igcnas.search_space.seeds import seed_configs, zoo_seed_configs


@pytest.mark.parametrize("text, value", [("250k", 250e3), ("1.5M", 1.5e6), ("30M", 30e6), ("2G", 2e9),
                                         ("1200", 1200.0), (" 3 m ", 3e6)])
def test_parse_count_accepts_human_units(text, value):
    assert parse_count(text, "x") == value


@pytest.mark.parametrize("text", ["-5", "0", "1.5X", "abc", "1e", ""])
def test_parse_count_rejects_bad_budgets(text):
    with pytest.raises(ValueError, match="x must be"):
        parse_count(text, "x")


def test_budget_violations_follow_optuna_convention():
    v = Budget(max_params=1000, max_macs=1e6).violations(params=500, macs=2e6)
    assert v["max_params"] < 0 < v["max_macs"]


def test_define_by_run_suggests_the_same_genes_every_trial_and_only_valid_complementary_configs():
    spec = SearchSpec(families=("igcv1", "igcv2", "igcv2_star", "xception", "deep_roots", "dense", "igcv3"),
                      widths=(8, 16, 24), input_size=8, in_channels=1)
    genome = genome_for(spec)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), directions=["maximize"])
    seen_families = set()
    for _ in range(150):
        trial = study.ask()
        config = suggest_config(trial, genome)
        assert list(trial.params) == list(genome.gene_names)  # fixed genes: one search space for every trial
        seen_families.add(config.family)
        closed_form_costs(config)  # resolves every shape
        if config.family in ("igcv1", "igcv2"):
            family = get_family(config.family)
            for i, stage in enumerate(config.stages):
                assert check_complementary(family.structure(stage, i), stage.width).complementary
        study.tell(trial, 0.0)
    assert seen_families == set(spec.families)
    distributions = {name: d for t in study.trials for name, d in t.distributions.items()}
    assert all(t.distributions == distributions for t in study.trials)


def test_suggest_config_takes_a_spec_through_its_shared_genome():
    spec = SearchSpec(widths=(8, 16), input_size=8, in_channels=1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    config = suggest_config(trial, spec)
    assert config == genome_for(spec).decode(trial.params)
    assert genome_for(spec) is genome_for(SearchSpec(widths=(8, 16), input_size=8, in_channels=1))
    with pytest.raises(TypeError, match="genome must be a Genome"):
        suggest_config(trial, {"widths": [8]})


def test_space_bounds_are_exact_on_a_small_space():
    spec = SearchSpec(families=("igcv2", "igcv1"), widths=(8, 16), blocks=(1,), max_l=3, input_size=8)
    bounds = space_bounds(spec)
    costs = []
    for family, width in spec.cells():
        import itertools

        for choice in itertools.product(*spec.stage_options(family, width)):
            costs.append(closed_form_costs(spec.build(family, width, 1, list(choice))))
    assert bounds.min_params == min(c.params for c in costs)
    assert bounds.max_params == max(c.params for c in costs)
    assert bounds.min_macs == min(c.macs for c in costs)
    assert bounds.max_macs == max(c.macs for c in costs)


def replay_seeds(genome, seeds):
    """Enqueue ``seeds`` and let suggest_config take them; every enqueued value must be used as is."""
    study = optuna.create_study(directions=["maximize"])
    for params in seeds:
        study.enqueue_trial(params)
    configs = []
    for params in seeds:
        trial = study.ask()
        configs.append(suggest_config(trial, genome))
        assert trial.params == params  # nothing resampled
        study.tell(trial, 0.0)
    return configs


def test_seed_trial_params_are_the_balanced_and_zoo_networks_once_each():
    from igcnas.search_space.enumerate import arch_id

    spec = SearchSpec(widths=(8, 16, 32), input_size=8, in_channels=1)
    genome = Genome(spec)
    seeds = seed_trial_params(genome)
    expected = [arch_id(c) for c in seed_configs(spec) + zoo_seed_configs(spec)]
    got = [arch_id(c) for c in replay_seeds(genome, seeds)]
    assert got == list(dict.fromkeys(expected))  # in order, duplicates dropped
    assert len(seeds) == len({tuple(sorted(p.items())) for p in seeds})
    assert {p["family"] for p in seeds} >= {"igcv2", "xception"}


def test_seed_trial_params_place_zoo_structures_at_a_searched_width():
    spec = SearchSpec(widths=(16, 24, 32, 48, 64))
    configs = replay_seeds(genome_for(spec), seed_trial_params(spec))
    # IGC-V1's partitions (2, 4, 8 per stage) fit width 48 exactly as in igcv1_c48_d20.
    assert any(c.family == "igcv1" and c.stem_width == 48 and c.stages[2].k1 == 8 for c in configs)
    assert all(c.stages[0].blocks == min(spec.blocks) for c in configs)
