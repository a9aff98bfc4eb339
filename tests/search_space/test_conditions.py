import math

import numpy as np
import pytest
import torch

from igcnas.models.blocks._interleaved import InterleavedBlock, channel_shuffle
from igcnas.search_space.conditions import check_balance, check_complementary, path_counts, shuffle_indices
from igcnas.search_space.enumerate import block_options
from igcnas.search_space.families import Interleaved
from igcnas.search_space.plan import resolve_interleaved


def torch_path_counts(structure: Interleaved, width: int) -> np.ndarray:
    """Paths measured on the real module: all-ones weights, identity BN, one-hot 1x1 inputs."""
    plan = resolve_interleaved(structure, c_in=width, c_out=width, stride=1, size=1)
    block = InterleavedBlock(plan, final_activation=False).double().eval()
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.fill_(1.0)
    # On a 1x1 input only the centre tap of the 3x3 kernel sees data, so the output is the path count.
    x = torch.eye(width, dtype=torch.float64).reshape(width, width, 1, 1)
    with torch.no_grad():
        y = block(x).reshape(width, width)  # row = input channel, column = output channel
    bn_scale = 1.0 / math.sqrt(1.0 + 1e-5)  # eval BatchNorm with unit running variance
    levels = 1 + (1 if plan.pointwise else 0)
    return (y.numpy() / bn_scale**levels).T


@pytest.mark.parametrize("groups, channels", [(2, 8), (4, 8), (8, 64), (3, 12)])
def test_shuffle_indices_match_the_torch_permutation(groups, channels):
    x = torch.arange(channels, dtype=torch.float32).reshape(1, channels, 1, 1)
    assert channel_shuffle(x, groups).flatten().tolist() == shuffle_indices(channels, groups)


def test_complementary_block_has_exactly_one_path_everywhere():
    structure = Interleaved(k1=1, chain=(8, 8))
    report = check_complementary(structure, 64)
    assert report.complementary and report.dense and report.product == 64
    np.testing.assert_allclose(torch_path_counts(structure, 64), np.ones((64, 64)), atol=1e-9)


def test_multiple_paths_are_reported_and_agree_with_the_module():
    structure = Interleaved(k1=1, chain=(16, 16))  # IGC-V2 C64's second stage: 16 * 16 = 256 > 128
    report = check_complementary(structure, 128)
    assert report.dense and not report.complementary
    assert (report.min_paths, report.max_paths) == (2, 2)
    measured = torch_path_counts(structure, 128)
    np.testing.assert_allclose(measured, path_counts(resolve_interleaved(structure, c_in=128, c_out=128,
                                                                           stride=1, size=1)), atol=1e-9)


def test_missing_paths_are_reported_and_agree_with_the_module():
    structure = Interleaved(k1=1, chain=(2, 2))  # 2 * 2 = 4 < 16: each output sees only 4 inputs
    report = check_complementary(structure, 16)
    assert not report.dense and report.missing_pairs == 16 * 12
    assert report.describe().startswith("not dense")
    measured = torch_path_counts(structure, 16)
    assert int((np.round(measured) == 0).sum()) == report.missing_pairs


@pytest.mark.parametrize("family", ["igcv1", "igcv2"])
@pytest.mark.parametrize("width", [12, 16, 24, 36, 64])
def test_every_enumerated_option_is_complementary(family, width):
    from igcnas.search_space.config import StageConfig
    from igcnas.search_space.families import get_family

    options = block_options(family, width, max_l=4)
    assert options
    for option in options:
        structure = get_family(family).structure(StageConfig(width=width, blocks=1, **option))
        assert check_complementary(structure, width).complementary, option


def test_balance_condition_bounds_and_equality():
    # Channel-wise 3x3 with K_2 = K_3 = 8 at C = 64: the 1x1 chain meets C (L-1) C^(1/(L-1)) exactly.
    balanced = check_balance(Interleaved(k1=1, chain=(8, 8)), 64)
    assert balanced.pointwise_excess == pytest.approx(1.0)
    assert balanced.pointwise_imbalance == 1.0
    skewed = check_balance(Interleaved(k1=1, chain=(2, 32)), 64)
    assert skewed.pointwise_excess > 1.5
    # Eq. 11 with the spatial term: S*K_1 = K_2 = K_3 = 9 at C = 81 reaches Eq. 10's bound.
    full = check_balance(Interleaved(k1=1, chain=(9, 9)), 81)
    assert full.imbalance == 1.0 and full.excess == pytest.approx(1.0)
    # Jensen: every complementary factorisation is at or above the bound.
    for option in block_options("igcv2", 64, max_l=4):
        assert check_balance(Interleaved(1, option["chain"]), 64).excess >= 1.0 - 1e-12
