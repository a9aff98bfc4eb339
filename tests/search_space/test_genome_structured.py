"""Structured Convolutions as genes: off changes nothing, on adds two fixed per-stage genes that always decode."""

import dataclasses
import itertools
import pickle
import random

import pytest

from igcnas.errors import BadInput
from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import arch_id
from igcnas.search_space.families import FAMILIES
from igcnas.search_space.genome import Genome
from igcnas.search_space.spec import (CHANNEL_REDUCTIONS, STRUCTURED_KERNELS, SearchSpec, space_bounds,
                                      structure_fields)

PLAIN_GENES = ("family", "width", "blocks", "s0.L", "s0.pos", "s1.L", "s1.pos", "s2.L", "s2.pos")
STRUCTURE_GENES = tuple(f"s{i}.{g}" for i in range(3) for g in ("sk", "cr"))


def small_spec(**changes):
    base = dict(families=tuple(FAMILIES), blocks=(1, 2), widths=(8, 16), max_l=4, input_size=8, in_channels=1)
    base.update(changes)
    return SearchSpec(**base)


def uniform_genes(genome, rng):
    return {gene.name: gene.uniform(rng) for gene in genome.genes}


def structure_of(config):
    return [(s.small_kernel, s.channel_reduction) for s in config.stages]


def is_structured(config):
    return any(s.structured for s in config.stages)


def plain_part(params):
    return {k: v for k, v in params.items() if k not in STRUCTURE_GENES}


def test_choices_are_declared_once_cheapest_last_with_plain_first():
    assert STRUCTURED_KERNELS == (3, 2, 1) and CHANNEL_REDUCTIONS == (1, 2, 4)
    assert structure_fields(0, 0) == {}  # index 0 is plain: no field at all, so plain configs stay identical
    assert structure_fields(2, 1) == {"small_kernel": 1, "channel_reduction": 2}
    with pytest.raises(BadInput, match="structured must be true or false"):
        SearchSpec(structured="yes")
    spec = small_spec(structured=True)
    assert SearchSpec.from_dict(spec.as_dict()) == spec


def test_off_leaves_genes_decodes_moves_and_random_draws_as_they_were():
    plain, default = Genome(small_spec(structured=False)), Genome(small_spec())
    assert plain.gene_names == default.gene_names == PLAIN_GENES
    assert not any("sk" in op or "cr" in op for op in plain.moves())
    rng_a, rng_b = random.Random(3), random.Random(3)
    for _ in range(50):
        params = uniform_genes(plain, rng_a)
        assert params == uniform_genes(default, rng_b)
        config = plain.decode(params)
        assert not is_structured(config) and all(s.small_kernel is None and s.channel_reduction is None
                                                 for s in config.stages)
        assert plain.locate(params).structure == ()
    with pytest.raises(ValueError, match="structure moves need a structured space"):
        plain.apply_op(plain.random_params(random.Random(0)), "step_sk(0,+1)")


def test_structured_genome_draws_the_plain_genes_first_with_the_same_seed():
    plain, structured = Genome(small_spec()), Genome(small_spec(structured=True))
    assert structured.gene_names == ("family", "width", "blocks", "s0.L", "s0.pos", "s0.sk", "s0.cr", "s1.L",
                                     "s1.pos", "s1.sk", "s1.cr", "s2.L", "s2.pos", "s2.sk", "s2.cr")
    genes = {g.name: g for g in structured.genes}
    for i in range(3):
        assert (genes[f"s{i}.sk"].kind, genes[f"s{i}.sk"].low, genes[f"s{i}.sk"].high) == ("int", 0, 2)
        assert (genes[f"s{i}.cr"].kind, genes[f"s{i}.cr"].low, genes[f"s{i}.cr"].high) == ("int", 0, 2)
    for seed in range(20):
        assert plain_part(structured.random_params(random.Random(seed))) == plain.random_params(random.Random(seed))


def test_every_uniform_structured_genome_decodes_and_zero_structure_is_the_plain_network():
    structured, plain = Genome(small_spec(structured=True)), Genome(small_spec())
    rng = random.Random(0)
    stage_kinds = set()
    networks = {True: 0, False: 0}
    for _ in range(300):
        params = uniform_genes(structured, rng)
        config = structured.decode(params)
        assert isinstance(config, NetworkConfig)
        point = structured.locate(params)
        for stage, (k, r) in zip(config.stages, point.structure):
            assert stage.small_kernel == (None if k == 0 else STRUCTURED_KERNELS[k])
            assert stage.channel_reduction == (None if r == 0 else CHANNEL_REDUCTIONS[r])
            stage_kinds.add(stage.structured)
        networks[is_structured(config)] += 1
        # the same genes with every structure index 0 are exactly the plain genome's network
        flat = {**params, **{name: 0 for name in STRUCTURE_GENES}}
        assert structured.decode(flat) == plain.decode(plain_part(params))
        networks[is_structured(structured.decode(flat))] += 1
    assert stage_kinds == {True, False}
    assert networks[True] > 0 and networks[False] > 0


def test_round_trip_on_200_random_points():
    genome = Genome(small_spec(structured=True))
    rng = random.Random(1)
    structured_seen = 0
    for n in range(200):
        params = genome.random_params(rng) if n % 2 else uniform_genes(genome, rng)
        config = genome.decode(params)
        assert genome.encode(config) == genome.canonical(params)
        assert genome.canonical(genome.canonical(params)) == genome.canonical(params)
        structured_seen += is_structured(config)
    assert structured_seen > 100


def test_encode_names_what_a_plain_space_or_unsearched_reduction_cannot_hold():
    structured, plain = Genome(small_spec(structured=True)), Genome(small_spec())
    params = structured.random_params(random.Random(2))
    params.update({**{name: 0 for name in STRUCTURE_GENES}, "s1.sk": 2, "s1.cr": 1})
    config = structured.decode(params)
    with pytest.raises(BadInput, match="stage 1 uses Structured Convolutions.*--structured on"):
        plain.encode(config)
    stages = list(config.stages)
    stages[1] = dataclasses.replace(stages[1], channel_reduction=8)
    with pytest.raises(BadInput, match="channel_reduction 8 is not searched"):
        structured.encode(config.replace(stages=tuple(stages)))


def test_every_move_is_valid_and_neighbours_include_structural_steps():
    genome = Genome(small_spec(structured=True))
    rng = random.Random(4)
    moves = genome.moves()
    assert {f"step_sk({i},{d:+d})" for i in range(3) for d in (-1, 1)} <= set(moves)
    assert {f"step_cr({i},{d:+d})" for i in range(3) for d in (-1, 1)} <= set(moves)
    for _ in range(15):
        here = genome.random_params(rng)
        before = genome.decode(here)
        for op in moves + [f"set_family({f})" for f in genome.families]:
            assert isinstance(genome.decode(genome.apply_op(here, op)), NetworkConfig)
        ops = [op for op, _ in genome.neighbours(here)]
        assert any(op.startswith("step_sk") for op in ops) and any(op.startswith("step_cr") for op in ops)
        for op, there in genome.neighbours(here):
            if not op.startswith(("step_sk", "step_cr")):
                continue
            i = int(op[op.index("(") + 1])
            after = genome.decode(there)
            changed = [j for j, (a, b) in enumerate(zip(structure_of(before), structure_of(after))) if a != b]
            assert changed == [i]  # a structure step changes that stage's structure only
            assert choices_equal(before, after)


def choices_equal(a, b):
    keep = ("width", "blocks", "stride", "k1", "chain", "k", "l", "expansion", "groups")
    return a.family == b.family and [[getattr(s, k) for k in keep] for s in a.stages] == \
        [[getattr(s, k) for k in keep] for s in b.stages]


def test_step_sk_and_step_cr_walk_the_choices_in_cheapness_order():
    genome = Genome(small_spec(families=("xception",), structured=True))
    params = genome.random_params(random.Random(0))
    params.update({"s0.sk": 0, "s0.cr": 0})
    kernels, reductions = [], []
    for _ in range(3):
        kernels.append(genome.decode(params).stages[0].small_kernel)
        params = genome.apply_op(params, "step_sk(0,+1)")
    assert kernels == [None, 2, 1] and genome.apply_op(params, "step_sk(0,+1)") == params  # stays at the end
    for _ in range(3):
        reductions.append(genome.decode(params).stages[0].channel_reduction)
        params = genome.apply_op(params, "step_cr(0,+1)")
    assert reductions == [None, 2, 4]
    assert genome.decode(genome.apply_op(params, "step_cr(0,-1)")).stages[0].channel_reduction == 2


def test_arch_ids_and_costs_of_plain_and_structured_networks_differ_and_caches_key_on_structure():
    genome = Genome(small_spec(structured=True))
    params = genome.random_params(random.Random(5))
    params.update({name: 0 for name in STRUCTURE_GENES})
    plain_point = genome.locate(params)
    ids, costs = {genome.arch_id(plain_point)}, {genome.costs(plain_point)}
    for k, r in itertools.product(range(3), range(3)):
        if (k, r) == (0, 0):
            continue
        point = genome.locate({**params, "s2.sk": k, "s2.cr": r})
        assert point != plain_point and point.structure[2] == (k, r)
        config = genome.build(point)
        assert genome.arch_id(point) == arch_id(config)
        report = closed_form_costs(config)
        assert genome.costs(point) == (report.params, report.macs)
        ids.add(genome.arch_id(point))
        costs.add(genome.costs(point))
    assert len(ids) > 1 and arch_id(genome.build(plain_point)) == arch_id(Genome(small_spec()).decode(
        plain_part(params)))
    assert len(costs) > 1
    clone = pickle.loads(pickle.dumps(genome))
    assert clone.structured and clone.decode(params) == genome.decode(params)


def test_space_bounds_of_a_structured_space_are_exact():
    spec = small_spec(families=("dense", "xception"), widths=(8,), blocks=(1,), structured=True)
    bounds = space_bounds(spec)
    plain = space_bounds(small_spec(families=("dense", "xception"), widths=(8,), blocks=(1,)))
    genome = Genome(spec)
    seen = []
    for family in genome.families:
        base = {"family": family, "width": 0, "blocks": 0,
                **{f"s{i}.{g}": v for i in range(3) for g, v in (("L", 1), ("pos", 0.0))}}
        for structure in itertools.product(range(3), repeat=6):
            params = {**base, **dict(zip(STRUCTURE_GENES, structure))}
            params = {**params, **{f"s{i}.L": genome.tables(family, 8)[i].ls[0] for i in range(3)}}
            seen.append(genome.costs(genome.locate(params)))
    assert bounds.min_params == min(p for p, _ in seen) < plain.min_params
    assert bounds.min_macs == min(m for _, m in seen) < plain.min_macs
    assert (bounds.max_params, bounds.max_macs) == (plain.max_params, plain.max_macs)
