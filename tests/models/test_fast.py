import copy

import pytest
import torch

from igcnas.models import build_model
from igcnas.models.fast import (choose_strategies, configure_allocator, fuse_batchnorm, optimize_for_inference,
                                set_strategy)
from igcnas.search_space.families import FAMILIES
from tests.models.test_blocks import small_config


def run(model, x):
    out = model(x)
    out.square().mean().backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_composed_chain_equals_reference_outputs_and_gradients(family):
    reference = build_model(small_config(family), seed=0)
    composed = copy.deepcopy(reference)
    set_strategy(composed, "composed")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y_ref, g_ref = run(reference, x)
    y_fast, g_fast = run(composed.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last))
    assert torch.allclose(y_ref, y_fast, atol=1e-5)
    for name, grad in g_ref.items():
        assert torch.allclose(grad, g_fast[name], atol=1e-5), name


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fused_inference_equals_eval_outputs(family):
    model = build_model(small_config(family), seed=0)
    model.train()
    for _ in range(2):  # non-trivial running statistics
        model(torch.randn(8, 3, 32, 32))
    model.eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
        for compose in (True, False):
            assert torch.allclose(fuse_batchnorm(model, compose=compose)(x), expected, atol=1e-5)
        best = optimize_for_inference(model, (3, 32, 32), batch=3, repeats=1)
        xin = x.to(memory_format=torch.channels_last) if best.igcnas_variant.endswith("channels_last") else x
        assert torch.allclose(best(xin), expected, atol=1e-5)


def test_strategy_choice_by_timing_sets_every_chain_block():
    model = build_model(small_config("igcv2"), seed=0)
    counts = choose_strategies(model, (3, 32, 32), batch=8, repeats=1)
    blocks = [m for m in model.modules() if hasattr(m, "pointwise") and len(m.pointwise) > 0]
    assert sum(counts.values()) == len(blocks)
    assert all(b.strategy in ("chain", "composed") for b in blocks)
    with pytest.raises(ValueError, match="strategy must be one of"):
        set_strategy(model, "magic")


def test_allocator_configuration_is_idempotent():
    assert configure_allocator() is True
    assert configure_allocator() is True
