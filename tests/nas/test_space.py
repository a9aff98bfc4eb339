import optuna
import pytest

from igcnas.nas.space import Budget, parse_count, suggest_config
from igcnas.search_space.spec import SearchSpec, space_bounds
from igcnas.search_space.conditions import check_complementary
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.families import get_family


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


def test_define_by_run_only_suggests_valid_complementary_configs():
    spec = SearchSpec(families=("igcv1", "igcv2", "igcv2_star", "xception", "deep_roots", "dense", "igcv3"),
                      widths=(8, 16, 24), input_size=8, in_channels=1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), directions=["maximize"])
    seen_families = set()
    for _ in range(150):
        trial = study.ask()
        config = suggest_config(trial, spec)
        seen_families.add(config.family)
        closed_form_costs(config)  # resolves every shape
        if config.family in ("igcv1", "igcv2"):
            family = get_family(config.family)
            for i, stage in enumerate(config.stages):
                assert check_complementary(family.structure(stage, i), stage.width).complementary
        study.tell(trial, 0.0)
    assert seen_families == set(spec.families)


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


def replay_seeds(spec, seeds):
    """Enqueue ``seeds`` and let suggest_config take them; every enqueued value must be used as is."""
    study = optuna.create_study(directions=["maximize"])
    for params in seeds:
        study.enqueue_trial(params)
    configs = []
    for params in seeds:
        trial = study.ask()
        configs.append(suggest_config(trial, spec))
        assert trial.params == params  # nothing resampled
        study.tell(trial, 0.0)
    return configs


def test_seed_params_are_valid_balanced_configs_in_suggest_names():
    from igcnas.nas.space import seed_params
    from igcnas.search_space.conditions import check_balance, check_complementary

    spec = SearchSpec(widths=(8, 16, 32), input_size=8, in_channels=1)
    seeds = seed_params(spec)
    assert {p["family"] for p in seeds} == {"igcv2", "xception"}
    for config in replay_seeds(spec, seeds):
        if config.family == "igcv2":
            family = get_family("igcv2")
            for i, stage in enumerate(config.stages):
                structure = family.structure(stage, i)
                assert check_complementary(structure, stage.width).complementary
                others = [o for o in spec.stage_options("igcv2", config.stages[0].width)[i]]
                best = min(check_balance(family.structure(type(stage)(width=stage.width, blocks=1, **o)),
                                         stage.width).pointwise_excess for o in others)
                assert check_balance(structure, stage.width).pointwise_excess == pytest.approx(best)


def test_zoo_seeds_keep_the_papers_stage_structures_at_a_searched_width():
    from igcnas.nas.space import zoo_seed_params
    from igcnas.search_space.zoo import ZOO

    spec = SearchSpec(widths=(16, 24, 32, 48, 64))
    seeds = zoo_seed_params(spec)
    families = {p["family"] for p in seeds}
    assert {"igcv1", "xception"} <= families
    for config in replay_seeds(spec, seeds):
        assert config.stages[0].blocks == min(spec.blocks)
        fields = get_family(config.family).params
        structure = [{k: getattr(s, k) for k in fields if getattr(s, k) is not None} for s in config.stages]
        # Some three-stage zoo network of this family has exactly these per-stage structures.
        assert any(e.config.family == config.family and len(e.config.stages) == 3 and
                   [{k: getattr(s, k) for k in fields if getattr(s, k) is not None} for s in e.config.stages]
                   == structure for e in ZOO.values())
    # IGC-V1's partitions (2, 4, 8 per stage) fit width 48 exactly as in igcv1_c48_d20.
    assert any(p["family"] == "igcv1" and p["width@igcv1"] == 48 and p["igcv1.s2@C192"] == "k1=8" for p in seeds)
