import pytest
import torch

from igcnas.models import BLOCKS, block_names, build_model, get_block, register_block
from igcnas.models.blocks import InterleavedBlock
from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import FAMILIES, Family, Interleaved

# One small network per family, with a stage transition (width change + stride 2) in each.
FAMILY_STAGES = {
    "dense": [{}, {}],
    "xception": [{}, {}],
    "deep_roots": [{"k1": 4}, {"k1": 4}],
    "igcv1": [{"k1": 2}, {"k1": 4}],
    "igcv2": [{"chain": (4, 4)}, {"chain": (4, 8)}],
    "igcv2_star": [{"k": 4, "l": 3}, {"k": 4, "l": 4}],
    "igcv3": [{"expansion": 2, "groups": 2}, {"expansion": 2, "groups": 2}],
}


def small_config(family: str, transition: str = "input_width") -> NetworkConfig:
    params = FAMILY_STAGES[family]
    stages = (
        StageConfig(width=16, blocks=2, stride=1, **params[0]),
        StageConfig(width=32, blocks=3, stride=2, **params[1]),
    )
    return NetworkConfig(family=family, stem_width=16, stages=stages, num_classes=10, transition=transition)


def test_registry_covers_every_family_once():
    assert block_names() == tuple(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_class_only_where_the_behaviour_differs(family):
    """InterleavedBlock builds every interleaved family from its plan; only the others register a class."""
    block = get_block(family)
    if FAMILIES[family].kind == "interleaved":
        assert block is InterleavedBlock and family not in BLOCKS
    else:
        assert block is BLOCKS[family] and not issubclass(block, InterleavedBlock)
    assert set(BLOCKS) <= set(FAMILIES)


def test_unknown_or_unbuildable_families_are_an_error(monkeypatch):
    with pytest.raises(ValueError, match="block family must be one of dense, xception, .*, got 'resnet'"):
        get_block("resnet")
    # a family of another kind that nobody registered a class for is not silently built as interleaved
    monkeypatch.setitem(FAMILIES, "other", Family("other", "other", (), "", lambda stage, index: Interleaved(1, ())))
    with pytest.raises(ValueError, match="got 'other'"):
        get_block("other")
    assert "other" not in block_names()


def test_duplicate_or_unknown_registration_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register_block("igcv3")(type("Again", (torch.nn.Module,), {}))
    with pytest.raises(ValueError, match="not a family"):
        register_block("resnet")(type("Resnet", (torch.nn.Module,), {}))
    assert "resnet" not in BLOCKS


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("transition", ["input_width", "expand"])
def test_every_family_builds_runs_and_every_parameter_gets_a_gradient(family, transition):
    model = build_model(small_config(family, transition), seed=0)
    assert any(type(m) is get_block(family) for m in model.modules())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) > 0, name


def test_seeded_builds_are_identical():
    a = build_model(small_config("igcv2"), seed=3).state_dict()
    b = build_model(small_config("igcv2"), seed=3).state_dict()
    c = build_model(small_config("igcv2"), seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].dtype.is_floating_point)
