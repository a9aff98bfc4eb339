"""The fixed-gene encoding: every gene vector decodes to a valid network, every network encodes."""

import pickle
import random
import subprocess
import sys

import pytest

from igcnas.search_space.conditions import check_balance, check_complementary
from igcnas.search_space.config import StageConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.design_space import DesignSpace
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.families import FAMILIES, Interleaved, get_family
from igcnas.search_space.genes import l_of_option
from igcnas.search_space.genome import Genome, genome_for
from igcnas.search_space.seeds import seed_configs, zoo_seed_configs
from igcnas.search_space.spec import SearchSpec, choices_of

ALL_FAMILIES = tuple(FAMILIES)
# Families whose blocks the complementary condition describes (one path between every pair of channels);
# deep_roots (g paths) and igcv2_star (K^(L*-1) >= C) are dense but redundant by design.
COMPLEMENTARY_FAMILIES = ("dense", "xception", "igcv1", "igcv2")


def small_spec(**changes):
    base = dict(families=ALL_FAMILIES, blocks=(1, 2), widths=(8, 16), max_l=4, input_size=8, in_channels=1)
    base.update(changes)
    return SearchSpec(**base)


def uniform_genes(genome, rng):
    return {gene.name: gene.uniform(rng) for gene in genome.genes}


def stage_choice(config, i):
    return choices_of(config)[i]


def test_genes_are_fixed_and_documented():
    genome = Genome(small_spec())
    assert genome.gene_names == ("family", "width", "blocks", "s0.L", "s0.pos", "s1.L", "s1.pos", "s2.L", "s2.pos")
    kinds = {g.name: g for g in genome.genes}
    assert kinds["family"].choices == ALL_FAMILIES
    assert (kinds["width"].low, kinds["width"].high) == (0, 1)
    assert (kinds["blocks"].low, kinds["blocks"].high) == (0, 1)
    assert (kinds["s0.L"].kind, kinds["s0.L"].low, kinds["s0.L"].high) == ("int", 1, 4)
    assert (kinds["s2.pos"].kind, kinds["s2.pos"].low, kinds["s2.pos"].high) == ("float", 0.0, 1.0)
    # igcv3's block has three group convolutions, so L reaches 3 even when max_l is 2.
    assert Genome(small_spec(max_l=2, families=("igcv3", "dense"))).max_l_gene == 3
    assert Genome(small_spec(max_l=2, families=("xception", "dense"))).max_l_gene == 2


def test_l_is_the_number_of_group_convolutions_per_family():
    assert l_of_option("dense", {}, 16) == 1
    assert l_of_option("xception", {}, 16) == 2
    assert l_of_option("deep_roots", {"k1": 4}, 16) == 2
    assert l_of_option("igcv1", {"k1": 4}, 16) == 2
    assert l_of_option("igcv2", {"chain": (4, 2, 2)}, 16) == 4
    assert l_of_option("igcv2_star", {"k": 4, "l": 3}, 16) == 3
    assert l_of_option("igcv3", {"expansion": 6, "groups": 2}, 16) == 3


@pytest.mark.slow
def test_round_trip_builds_the_same_network_for_every_network_of_a_small_space():
    spec = small_spec()
    genome = Genome(spec)
    seen_families = set()
    count = 0
    for config in DesignSpace(spec):
        params = genome.encode(config)
        assert arch_id(genome.decode(params)) == arch_id(config)
        assert genome.canonical(params) == params  # encode gives the canonical genes
        seen_families.add(config.family)
        count += 1
    assert seen_families == set(ALL_FAMILIES)
    assert count > 1000


def test_every_uniform_gene_vector_decodes_to_a_valid_complementary_network():
    spec = SearchSpec(widths=(8, 16, 24, 32, 48), blocks=(1, 2), input_size=8, in_channels=1)
    genome = Genome(spec)
    rng = random.Random(0)
    families, ls = set(), set()
    for _ in range(2000):
        config = genome.decode(uniform_genes(genome, rng))
        costs = closed_form_costs(config)  # resolves every layer shape
        assert costs.params > 0 and costs.macs > 0
        family = get_family(config.family)
        families.add(config.family)
        for i, stage in enumerate(config.stages):
            structure = family.structure(stage, i)
            if isinstance(structure, Interleaved):
                ls.add(structure.num_convs)
                if config.family in COMPLEMENTARY_FAMILIES:
                    assert check_complementary(structure, stage.width).complementary, (config.family, stage)
    assert families == set(spec.families)
    assert ls == {1, 2, 3, 4}


def test_options_of_one_l_are_sorted_by_cost_so_neighbours_cost_alike():
    spec = SearchSpec(families=("igcv2", "igcv3", "deep_roots"), widths=(16, 32), blocks=(2,), input_size=8)
    genome = Genome(spec)
    for family, width in spec.cells():
        for i, table in enumerate(genome.tables(family, width)):
            for l_value, options in table.by_l.items():
                reference = [table_.by_l[table_.ls[0]][0] for table_ in genome.tables(family, width)]
                costs = []
                for option in options:
                    choice = reference.copy()
                    choice[i] = option
                    costs.append(closed_form_costs(spec.build(family, width, 2, choice)).params)
                assert costs == sorted(costs), (family, width, i, l_value)


def test_step_stage_moves_one_stage_to_the_neighbouring_option_of_the_same_l():
    genome = Genome(small_spec(widths=(16, 32)))
    rng = random.Random(1)
    moved = 0
    for _ in range(300):
        params = genome.random_params(rng)
        here = genome.decode(params)
        point = genome.locate(params)
        for i in range(genome.num_stages):
            for delta in (-1, 1):
                there_params = genome.step_stage(params, i, delta)
                there = genome.decode(there_params)
                new_point = genome.locate(there_params)
                l_value, index, n = point.stages[i]
                assert (there.family, there.stem_width, there.stages[0].blocks) == (
                    here.family, here.stem_width, here.stages[0].blocks)
                for j in range(genome.num_stages):
                    if j != i:
                        assert stage_choice(there, j) == stage_choice(here, j)
                if 0 <= index + delta < n:
                    assert new_point.stages[i] == (l_value, index + delta, n)
                    assert stage_choice(there, i) != stage_choice(here, i)
                    moved += 1
                else:  # at an end: nothing moves
                    assert genome.canonical(there_params) == genome.canonical(params)
    assert moved > 100


def test_step_l_changes_l_to_the_next_offered_one_and_nothing_else():
    genome = Genome(small_spec(widths=(16, 32), families=("igcv2", "igcv2_star")))
    rng = random.Random(2)
    moved = 0
    for _ in range(200):
        params = genome.random_params(rng)
        point = genome.locate(params)
        for i in range(genome.num_stages):
            ls = genome.tables(point.family, genome.widths[point.width_index])[i].ls
            for delta in (-1, 1):
                new_point = genome.locate(genome.step_l(params, i, delta))
                k = ls.index(point.stages[i][0]) + delta
                expected_l = ls[k] if 0 <= k < len(ls) else point.stages[i][0]
                assert new_point.stages[i][0] == expected_l
                assert new_point.stages[:i] + new_point.stages[i + 1:] == point.stages[:i] + point.stages[i + 1:]
                assert (new_point.family, new_point.width_index, new_point.blocks_index) == (
                    point.family, point.width_index, point.blocks_index)
                moved += expected_l != point.stages[i][0]
    assert moved > 50


def test_step_width_and_step_blocks_move_one_step():
    spec = small_spec(widths=(8, 13, 16, 32), families=("deep_roots", "xception", "igcv2"))
    genome = Genome(spec)
    rng = random.Random(3)
    for _ in range(200):
        params = genome.random_params(rng)
        here = genome.decode(params)
        valid = [genome.widths[j] for j in genome.valid_widths[here.family]]
        for delta in (-1, 1):
            there = genome.decode(genome.step_width(params, delta))
            k = valid.index(here.stem_width) + delta
            assert there.stem_width == (valid[k] if 0 <= k < len(valid) else here.stem_width)
            assert (there.family, there.stages[0].blocks) == (here.family, here.stages[0].blocks)
            deeper = genome.decode(genome.step_blocks(params, delta))
            b = genome.blocks.index(here.stages[0].blocks) + delta
            assert deeper.stages[0].blocks == (genome.blocks[b] if 0 <= b < len(genome.blocks) else
                                               here.stages[0].blocks)
            # Option tables do not depend on the depth: every stage keeps its choice.
            assert choices_of(deeper) == choices_of(here) and deeper.stem_width == here.stem_width
    # deep_roots has no network at width 13: its width steps jump over it.
    params = genome.encode(spec.build("deep_roots", 8, 1, [o[0] for o in spec.stage_options("deep_roots", 8)]))
    assert genome.decode(genome.step_width(params, +1)).stem_width == 16


def test_neighbours_are_one_move_away_and_replayable():
    genome = Genome(small_spec())
    params = genome.random_params(random.Random(4))
    neighbours = genome.neighbours(params)
    assert neighbours
    for op, there in neighbours:
        assert there == genome.canonical(genome.apply_op(params, op))
        assert there != genome.canonical(params)
    with pytest.raises(ValueError, match="unknown move"):
        genome.apply_op(params, "teleport(1)")


def test_repair_snaps_width_to_the_nearest_valid_one_ties_to_the_smaller():
    spec = small_spec(families=("deep_roots", "xception"), widths=(8, 13, 16))
    genome = Genome(spec)
    assert genome.valid_widths == {"deep_roots": (0, 2), "xception": (0, 1, 2)}
    genes = {"family": "deep_roots", "width": 1, "blocks": 0, "s0.L": 2, "s0.pos": 0.0, "s1.L": 2, "s1.pos": 0.0,
             "s2.L": 2, "s2.pos": 0.0}
    assert genome.decode(genes).stem_width == 8  # 13 is invalid; 8 and 16 are equally near: the smaller
    assert genome.decode({**genes, "family": "xception"}).stem_width == 13  # valid for xception


def test_repair_snaps_l_to_the_nearest_offered_one_ties_to_the_smaller():
    spec = small_spec(families=("igcv2_star",), widths=(16,), max_l=5)
    genome = Genome(spec)
    assert genome.tables("igcv2_star", 16)[0].ls == (3, 5)
    genes = {"family": "igcv2_star", "width": 0, "blocks": 0, "s0.L": 4, "s0.pos": 0.0, "s1.L": 1, "s1.pos": 0.0,
             "s2.L": 5, "s2.pos": 0.0}
    config = genome.decode(genes)
    assert config.stages[0].l == 3  # 4 is between 3 and 5: the smaller
    assert config.stages[1].l == 3  # 1 -> the nearest offered, 3
    assert config.stages[2].l == 4  # stage 2 offers 3 and 4: 5 -> 4
    assert genome.decode({**genes, "s0.L": 5}).stages[0].l == 5


def test_pos_picks_floor_pos_times_n_clipped():
    spec = small_spec(families=("igcv3",), widths=(16,))
    genome = Genome(spec)
    options = genome.tables("igcv3", 16)[0].by_l[3]
    assert len(options) == 9
    base = {"family": "igcv3", "width": 0, "blocks": 0, "s1.L": 3, "s1.pos": 0.0, "s2.L": 3, "s2.pos": 0.0}
    for pos, index in ((0.0, 0), (0.11, 0), (0.12, 1), (0.5, 4), (0.999, 8), (1.0, 8)):
        config = genome.decode({**base, "s0.L": 1, "s0.pos": pos})  # L 1 -> 3, igcv3's only L
        assert stage_choice(config, 0) == options[index]
    assert genome.encode(config)["s0.pos"] == pytest.approx(8.5 / 9)


@pytest.mark.parametrize("change, message", [
    ({"family": "resnet"}, "gene 'family'"),
    ({"width": 2}, "gene 'width'"),
    ({"blocks": -1}, "gene 'blocks'"),
    ({"s1.L": 0}, "gene 's1.L'"),
    ({"s1.L": 2.5}, "gene 's1.L'"),
    ({"s0.pos": 1.5}, "gene 's0.pos'"),
    ({"s0.pos": float("nan")}, "gene 's0.pos'"),
])
def test_decode_names_a_bad_gene(change, message):
    genome = Genome(small_spec())
    genes = {**genome.random_params(random.Random(0)), **change}
    with pytest.raises(ValueError, match=message):
        genome.decode(genes)


def test_decode_names_a_missing_gene():
    genome = Genome(small_spec())
    genes = genome.random_params(random.Random(0))
    del genes["s2.pos"]
    with pytest.raises(ValueError, match="gene 's2.pos' is missing"):
        genome.decode(genes)


def test_encode_refuses_networks_outside_the_space():
    spec = small_spec(families=("igcv2", "xception"))
    genome = Genome(spec)
    inside = spec.build("igcv2", 8, 1, [o[0] for o in spec.stage_options("igcv2", 8)])
    genome.encode(inside)
    with pytest.raises(ValueError, match="family 'igcv1' is not searched"):
        genome.encode(small_spec(families=("igcv1",)).build("igcv1", 8, 1, [{"k1": 2}] * 3))
    with pytest.raises(ValueError, match="width 32 is not a searched width"):
        genome.encode(small_spec(widths=(32,)).build("xception", 32, 1, [{}] * 3))
    with pytest.raises(ValueError, match="blocks per stage"):
        genome.encode(small_spec(blocks=(3,)).build("xception", 8, 3, [{}] * 3))
    with pytest.raises(ValueError, match="not in the space"):  # L = 5 exceeds max_l = 4
        genome.encode(small_spec(max_l=5).build("igcv2", 16, 1, [{"chain": (2, 2, 2, 2)}, {"chain": (4, 8)},
                                                                 {"chain": (8, 8)}]))
    with pytest.raises(ValueError, match="template"):
        genome.encode(inside.replace(num_classes=100))


def test_genome_refuses_a_non_spec_and_an_empty_space():
    with pytest.raises(ValueError, match="spec must be a SearchSpec"):
        Genome({"families": ["igcv2"]})
    with pytest.raises(ValueError, match="spec: the search space is empty"):
        Genome(SearchSpec(families=("igcv2",), widths=(7,), input_size=8))


def test_seeds_are_valid_encodable_and_balanced():
    spec = SearchSpec(widths=(8, 16, 32), input_size=8, in_channels=1)
    genome = Genome(spec)
    seeds = seed_configs(spec)
    assert {c.family for c in seeds} == {"igcv2", "xception"}
    assert len(seeds) == 6
    igcv2 = get_family("igcv2")
    for config in seeds + zoo_seed_configs(spec):
        assert arch_id(genome.decode(genome.encode(config))) == arch_id(config)
    for config in (c for c in seeds if c.family == "igcv2"):
        for i, stage in enumerate(config.stages):
            structure = igcv2.structure(stage, i)
            assert check_complementary(structure, stage.width).complementary
            best = min(check_balance(igcv2.structure(StageConfig(width=stage.width, blocks=1, **o)),
                                     stage.width).pointwise_excess
                       for o in spec.stage_options("igcv2", config.stem_width)[i])
            assert check_balance(structure, stage.width).pointwise_excess == pytest.approx(best)


def test_zoo_seeds_keep_the_papers_stage_structures():
    from igcnas.search_space.paper_networks import ZOO

    spec = SearchSpec(widths=(16, 24, 32, 48, 64))
    seeds = zoo_seed_configs(spec)
    assert {"igcv1", "xception"} <= {c.family for c in seeds}
    for config in seeds:
        assert config.stages[0].blocks == min(spec.blocks)
        assert any(e.config.family == config.family and len(e.config.stages) == 3
                   and choices_of(e.config) == choices_of(config) for e in ZOO.values())
        Genome(spec).encode(config)
    # IGC-V1's partitions (2, 4, 8 per stage) fit width 48 exactly as in igcv1_c48_d20.
    assert any(c.family == "igcv1" and c.stem_width == 48 and c.stages[2].k1 == 8 for c in seeds)


def test_genome_pickles_without_its_caches_and_decodes_alike():
    genome = Genome(small_spec())
    params = genome.random_params(random.Random(5))
    config = genome.decode(params)
    copy = pickle.loads(pickle.dumps(genome))
    assert copy == genome and copy._tables == {}
    assert arch_id(copy.decode(params)) == arch_id(config)
    assert genome_for(small_spec()) is genome_for(small_spec())


def test_random_params_reach_every_family_and_are_canonical():
    genome = Genome(small_spec())
    rng = random.Random(6)
    draws = [genome.random_params(rng) for _ in range(300)]
    assert {d["family"] for d in draws} == set(ALL_FAMILIES)
    assert all(genome.canonical(d) == d for d in draws)


def test_genome_imports_neither_torch_nor_optuna():
    code = ("import sys, igcnas.search_space.genome; "
            "bad = [m for m in ('torch', 'optuna') if m in sys.modules] + "
            "[m for m in sys.modules if m.startswith('igcnas.nas')]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

