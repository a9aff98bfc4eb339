"""Structured Convolutions across whole networks: every family, the plan's counts, the decomposition."""

import random

import pytest
import torch

from igcnas.evaluators.measured_costs import measure_config
from igcnas.models import build_model
from igcnas.models.decomposition import decompose
from igcnas.models.structured import SumPoolConv2d, StructuredConv2d, projected
from igcnas.search_space.config import StageConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.families import FAMILIES
from tests.evaluators.test_measured_costs import assert_closed_form_matches_fvcore, sampled_configs
from tests.models.test_blocks import small_config


def structured(config, options):
    """``config`` with stage i taking ``options[i] = (small_kernel, channel_reduction)``."""
    stages = tuple(s if o is None else StageConfig(**{**s.__dict__, "small_kernel": o[0], "channel_reduction": o[1]})
                   for s, o in zip(config.stages, options))
    return config.replace(stages=stages)


# stage 0 (stride 1) dividing reduction, stage 1 (with its stride-2 transition) non-dividing (ceil(C_g/3))
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("options", [((2, 2), (2, 3)), ((1, 1), (3, 2))], ids=["n2", "n1-channels-only"])
def test_decomposed_network_computes_the_projected_training_network(family, options):
    config = structured(small_config(family), options)
    model = build_model(config, seed=0).eval()
    layers = [m for m in model.modules() if isinstance(m, StructuredConv2d)]
    assert layers
    if options[1][0] < 3:  # a spatial structure reaches the stride-2 3x3 of the transition
        assert any(m.stride == (2, 2) for m in layers)
    with torch.no_grad():
        for m in model.modules():  # non-trivial BN statistics, so folding is exercised too
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
                m.running_var.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), projected(model):
        expected = model(x)
    for fold in (False, True):
        deployed = decompose(model, fold_bn=fold)
        assert not any(isinstance(m, StructuredConv2d) for m in deployed.modules())
        with torch.no_grad():
            got = deployed(x)
        assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_a_deployed_build_loads_a_decomposed_state_dict():
    config = structured(small_config("igcv2"), ((2, 2), (1, 4)))
    trained = build_model(config, seed=3)
    deployed = build_model(config, seed=0, form="deployed")
    deployed.load_state_dict(decompose(trained).state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), projected(trained.eval()):
        assert torch.allclose(deployed.eval()(x), trained(x), atol=1e-5)


def structured_samples(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for config in sampled_configs(n, seed=seed):
        options = [rng.choice([None, (3, 2), (2, 1), (2, 2), (1, 3), (2, 4)]) for _ in config.stages]
        if all(o is None for o in options):
            options[0] = (2, 2)
        out.append(structured(config, options))
    return out


@pytest.mark.slow
def test_closed_form_equals_fvcore_on_the_deployed_form_of_200_sampled_structured_configs():
    configs = structured_samples(200, seed=11)
    assert len({c.family for c in configs}) == 7
    for config in configs:
        assert_closed_form_matches_fvcore(config)
    for config in configs[:40]:  # the training form holds the full kernels
        assert measure_config(config, form="train").params == closed_form_costs(config).train_params


def test_structured_and_plain_networks_have_different_ids_and_costs():
    plain = small_config("xception")
    spatial, channels = structured(plain, ((2, 1), (2, 1))), structured(plain, ((3, 2), (3, 2)))
    ids = {arch_id(plain), arch_id(spatial), arch_id(channels)}
    assert len(ids) == 3
    assert arch_id(structured(plain, ((3, 1), (3, 1)))) == arch_id(plain)  # the trivial option is plain
    a, b = closed_form_costs(plain), closed_form_costs(spatial)
    assert b.params < a.params and b.macs < a.macs and b.sum_pool_adds > 0 == a.sum_pool_adds
    assert b.train_params == a.params


def test_deployed_build_has_sum_pool_modules_only_in_structured_stages():
    config = structured(small_config("igcv1"), (None, (2, 2)))
    model = build_model(config, form="deployed")
    first, second = model.stages[0], model.stages[1]
    assert not any(isinstance(m, SumPoolConv2d) for m in first.modules())
    assert any(isinstance(m, SumPoolConv2d) for m in second.modules())
