import random

import pytest

from igcnas.evaluators.measured_costs import measure_config, measure_costs, measure_latency
from igcnas.models import build_model
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.design_space import DesignSpace
from igcnas.search_space.spec import SearchSpec
from igcnas.search_space.paper_networks import ZOO


def sampled_configs(n: int, seed: int):
    """Valid configurations across every family, transitions, strides, resolutions and shortcuts."""
    rng = random.Random(seed)
    spaces = [
        DesignSpace(SearchSpec(families=(family,), widths=(8, 12, 16, 24), blocks=(1,), max_l=4,
                              input_size=16))
        for family in ("dense", "xception", "deep_roots", "igcv1", "igcv2", "igcv2_star")
    ]
    spaces += [
        DesignSpace(SearchSpec(families=("igcv3",), widths=(8, 16), blocks=(2,), input_size=16)),
        DesignSpace(SearchSpec(families=("igcv2", "xception", "igcv1"), widths=(16, 32), blocks=(3,),
                              num_stages=2, input_size=8)),
    ]
    configs = []
    for i in range(n):
        space = spaces[i % len(spaces)]
        config = space.sample(1, seed=rng.randrange(10**9))[0]
        changes = {"transition": rng.choice(["input_width", "expand", "first_able"])}
        if i % 5 == 0:
            changes["shortcut"] = "projection"
            changes["shortcut_groups"] = rng.choice([1, 2, 4, config.stem_width])
        if i % 7 == 0:
            changes["stem_width"] = config.stem_width // 2 if config.stem_width % 2 == 0 else config.stem_width
        try:
            configs.append(config.replace(**changes))
        except ValueError:
            configs.append(config)  # the change does not fit that shape: keep the plain sample
    return configs


def assert_closed_form_matches_fvcore(config) -> None:
    """Closed form == fvcore operator by operator on the deployed network; torch counts 2 FLOPs per MAC."""
    from igcnas.search_space.costs import uncounted_operations

    closed = closed_form_costs(config)
    measured = measure_config(config)
    assert measured.by_operator == closed.by_operator, config
    assert (measured.params, measured.conv_params, measured.macs) == (
        closed.params, closed.conv_params, closed.macs), config
    assert measured.uncounted.get("aten::avg_pool3d", 0) == uncounted_operations(config)["sum_pool"]
    assert measured.torch_flops == 2 * measured.macs


@pytest.mark.slow
def test_closed_form_equals_fvcore_on_200_sampled_configs():
    configs = sampled_configs(200, seed=0)
    assert len({c.family for c in configs}) == 7
    for config in configs:
        assert_closed_form_matches_fvcore(config)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_closed_form_equals_fvcore_for_every_zoo_network(name):
    config = ZOO[name].config
    closed = closed_form_costs(config)
    measured = measure_config(config)
    assert measured.by_operator == closed.by_operator
    assert measured.params == closed.params
    assert measured.fvcore_total == closed.fvcore_total


def test_uncounted_operators_are_named_not_hidden():
    measured = measure_config(ZOO["igcv3_1.0"].config)
    assert measured.uncounted.get("aten::add", 0) > 0  # residual additions
    assert any("hardtanh" in op for op in measured.uncounted)  # ReLU6


def test_latency_reports_a_figure_per_batch_and_threads():
    config = ZOO["igcv2_c64_d8"].config
    model = build_model(config)
    latency = measure_latency(model, (3, 32, 32), batch_sizes=(1, 4), threads=1)
    assert set(latency.ms_by_batch) == {1, 4}
    assert 0 < latency.ms_by_batch[1] < latency.ms_by_batch[4]  # four images cost more than one
    assert latency.threads == 1
    assert model.training  # restored


def test_measure_costs_restores_training_mode():
    model = build_model(ZOO["xception_c35_d8"].config)
    model.train()
    measure_costs(model, (3, 32, 32))
    assert model.training
