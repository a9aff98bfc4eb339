import math

import pytest

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.spec import SearchSpec
from igcnas.search_space.design_space import DesignSpace
from igcnas.search_space.enumerate import arch_id, block_options, ordered_factorizations


def test_ordered_factorizations_are_complete_and_exact():
    result = ordered_factorizations(64)
    assert len(result) == 32  # compositions of 6 (64 = 2^6)
    assert all(math.prod(r) == 64 and min(r) >= 2 for r in result)
    assert len(set(result)) == len(result)
    assert ordered_factorizations(12, max_parts=2) == [(2, 6), (3, 4), (4, 3), (6, 2), (12,)]


def test_count_matches_enumeration_and_ids_are_unique():
    space = DesignSpace(SearchSpec(widths=(8, 12, 16), blocks=(1,), max_l=3))
    configs = list(space)
    assert len(configs) == space.count() == sum(space.count_by_family().values())
    ids = {arch_id(c) for c in configs}
    assert len(ids) == len(configs)


def test_sampling_is_seeded_and_covers_the_space():
    space = DesignSpace(SearchSpec(families=("igcv2",), widths=(16,), blocks=(2,), max_l=3))
    first = space.sample(50, seed=7)
    assert first == space.sample(50, seed=7)
    assert first != space.sample(50, seed=8)
    seen = {arch_id(c) for c in space.sample(400, seed=1)}
    assert len(seen) == space.count()  # small space: 400 uniform draws see every network


def test_equivalent_encodings_share_one_arch_id():
    stages_x = (StageConfig(width=16, blocks=2),)
    xception = NetworkConfig(family="xception", stem_width=16, stages=stages_x)
    igcv2_one_branch = NetworkConfig(family="igcv2", stem_width=16,
                                     stages=(StageConfig(width=16, blocks=2, chain=(16,)),))
    assert arch_id(xception) == arch_id(igcv2_one_branch)
    # The transition flag only matters where a block changes width.
    assert arch_id(xception) == arch_id(xception.replace(transition="expand"))
    different = NetworkConfig(family="igcv2", stem_width=16, stages=(StageConfig(width=16, blocks=2, chain=(4, 4)),))
    assert arch_id(different) != arch_id(xception)


def test_igcv2_enumeration_excludes_the_xception_encoding():
    assert {"chain": (16,)} not in block_options("igcv2", 16)
    assert all(len(o["chain"]) >= 2 for o in block_options("igcv2", 64))


def test_space_spec_validates():
    with pytest.raises(ValueError, match="family must be one of"):
        SearchSpec(families=("nope",))
    with pytest.raises(ValueError, match="max_l"):
        SearchSpec(max_l=1)
