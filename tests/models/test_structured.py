import pytest
import torch
from torch import nn

from igcnas.models.decomposition import decompose
from igcnas.models.structured import (StructuredConv2d, SumPoolConv2d, project_, projected, structural_penalty,
                                      structured_layers)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(in_ch, out_ch, k, *, stride=1, padding=0, groups=1, c_g, n, seed=0, dtype=torch.float32):
    conv = StructuredConv2d(in_ch, out_ch, k, stride=stride, padding=padding, groups=groups,
                            small_channels=c_g, small_kernel=n).to(dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen(seed), dtype=dtype))
    return conv


def expand(beta: torch.Tensor, c_full: int, k_full: int) -> torch.Tensor:
    """The structured kernel built by hand: one box of ones per small position, scaled by beta."""
    out, c_g, n, _ = beta.shape
    wc, ws = c_full - c_g + 1, k_full - n + 1
    w = torch.zeros(out, c_full, k_full, k_full, dtype=beta.dtype)
    for a in range(c_g):
        for i in range(n):
            for j in range(n):
                w[:, a:a + wc, i:i + ws, j:j + ws] += beta[:, a, i, j].reshape(-1, 1, 1, 1)
    return w


# (in_channels, out_channels, kernel, padding, groups, small_channels, small_kernel)
CASES = (
    [("dense", 8, 6, 3, 1, 1, c, n) for c in (8, 4, 3) for n in (3, 2, 1)]
    + [("group", 16, 8, 3, 1, 4, c, n) for c in (4, 3) for n in (3, 2, 1)]
    + [("depthwise", 8, 8, 3, 1, 8, 1, n) for n in (3, 2, 1)]
    + [("group1x1", 16, 8, 1, 0, 4, c, 1) for c in (4, 3, 1)]
    + [("dense_nopad", 6, 4, 3, 0, 1, 4, 2)]
)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-cg{c[6]}-n{c[7]}")
def test_decomposed_equals_projected_training_form(case, stride):
    _, in_ch, out_ch, k, pad, groups, c_g, n = case
    conv = make(in_ch, out_ch, k, stride=stride, padding=pad, groups=groups, c_g=c_g, n=n, seed=1)
    deployed = decompose(conv)
    assert isinstance(deployed, SumPoolConv2d)
    assert deployed.conv.weight.shape == (out_ch, c_g, n, n)
    with torch.no_grad():
        reference_conv = make(in_ch, out_ch, k, stride=stride, padding=pad, groups=groups, c_g=c_g, n=n, seed=1)
        project_(reference_conv)
        for size in (9, 8):
            x = torch.randn(2, in_ch, size, size, generator=gen(2))
            ref = reference_conv(x)
            out = deployed(x)
            assert out.shape == ref.shape
            assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_trivial_structure_is_identity():
    conv = make(8, 4, 3, groups=2, c_g=4, n=3, dtype=torch.float64)
    assert torch.allclose(conv.projected_weight(), conv.weight, atol=1e-12)
    assert torch.allclose(conv.small_weight(), conv.weight, atol=1e-12)
    assert conv.structure_gap().item() < 1e-24
    deployed = SumPoolConv2d.from_structured(conv)
    assert deployed.pool_window == (1, 1)


@pytest.mark.parametrize("shape", [(8, 3, 3, 2), (8, 3, 4, 1), (1, 3, 1, 2), (4, 1, 3, 1), (5, 5, 2, 3)])
def test_projection_idempotent_and_gap(shape):
    c_full, k_full, c_g, n = shape
    conv = make(c_full * 2, 6, k_full, groups=2, c_g=c_g, n=n, seed=3, dtype=torch.float64)
    assert conv.structure_gap().item() > 1e-3
    p = conv.projected_weight()
    with torch.no_grad():
        conv.weight.copy_(p)
    assert torch.allclose(conv.projected_weight(), p, atol=1e-6)
    assert conv.structure_gap().item() < 1e-20


@pytest.mark.parametrize("shape", [(8, 3, 3, 2), (8, 3, 4, 1), (1, 3, 1, 2), (4, 1, 3, 1), (5, 5, 2, 3), (3, 3, 3, 3)])
def test_explicit_structured_kernel_is_fixed_and_small_weight_recovers_beta(shape):
    c_full, k_full, c_g, n = shape
    beta = torch.randn(6, c_g, n, n, generator=gen(4), dtype=torch.float64)
    conv = make(c_full * 2, 6, k_full, groups=2, c_g=c_g, n=n, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(expand(beta, c_full, k_full))
    assert torch.allclose(conv.projected_weight(), conv.weight, atol=1e-10)
    assert torch.allclose(conv.small_weight(), beta, atol=1e-10)
    assert conv.structure_gap().item() < 1e-20


def test_fold_bn_equals_unfolded_in_eval():
    conv = make(8, 6, 3, stride=2, padding=1, c_g=4, n=2, seed=5)
    bn = nn.BatchNorm2d(6)
    g = gen(6)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(6, generator=g))
        bn.running_var.copy_(torch.rand(6, generator=g) * 2 + 0.2)
        bn.weight.copy_(torch.randn(6, generator=g))
        bn.bias.copy_(torch.randn(6, generator=g))
    model = nn.Sequential(conv, bn, nn.ReLU()).eval()
    unfolded = decompose(model)
    folded = decompose(model, fold_bn=True)
    assert not folded.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model)  # the original is untouched
    x = torch.randn(2, 8, 9, 9, generator=gen(7))
    with torch.no_grad():
        ref = unfolded(x)
        out = folded(x)
        with projected(model):
            training_form = model(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert (training_form - ref).abs().max() <= 1e-5 * ref.abs().max()


class TinyBlock(nn.Module):
    """The attribute pattern of the interleaved blocks: spatial -> bn1 -> pointwise chain -> bn2."""

    def __init__(self):
        super().__init__()
        self.spatial = StructuredConv2d(8, 8, 3, padding=1, groups=8, small_channels=1, small_kernel=2)
        self.bn1 = nn.BatchNorm2d(8)
        self.pointwise = nn.ModuleList([nn.Conv2d(8, 8, 1, groups=2, bias=False),
                                        StructuredConv2d(8, 8, 1, groups=2, small_channels=3, small_kernel=1)])
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.bn1(self.spatial(x))
        for conv in self.pointwise:
            x = conv(x)
        return self.bn2(x)


def test_fold_bn_block_pattern():
    block = TinyBlock()
    g = gen(8)
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):
            bn.running_mean.copy_(torch.randn(8, generator=g))
            bn.running_var.copy_(torch.rand(8, generator=g) + 0.5)
            bn.weight.copy_(torch.randn(8, generator=g))
    block.eval()
    folded = decompose(block, fold_bn=True)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.bn2, nn.Identity)
    assert isinstance(folded.spatial, SumPoolConv2d) and isinstance(folded.pointwise[1], SumPoolConv2d)
    x = torch.randn(2, 8, 8, 8, generator=gen(9))
    with torch.no_grad():
        ref = decompose(block)(x)
        out = folded(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_projected_context_restores_exactly():
    model = nn.Sequential(make(8, 6, 3, padding=1, c_g=3, n=2, seed=10), nn.ReLU(),
                          make(6, 6, 1, groups=2, c_g=2, n=1, seed=11))
    before = [layer.weight.detach().clone() for layer in structured_layers(model)]
    with projected(model) as inside:
        assert inside is model
        for layer in structured_layers(model):
            assert layer.structure_gap().item() < 1e-10
    for layer, weight in zip(structured_layers(model), before):
        assert torch.equal(layer.weight, weight)


def test_structural_penalty_differentiable_and_zero_when_projected():
    model = nn.Sequential(make(8, 6, 3, padding=1, c_g=3, n=2, seed=12, dtype=torch.float64),
                          make(6, 6, 3, groups=6, c_g=1, n=2, seed=13, dtype=torch.float64))
    penalty = structural_penalty(model)
    assert penalty.item() > 1e-3
    penalty.backward()
    for layer in structured_layers(model):
        assert layer.weight.grad is not None and layer.weight.grad.abs().max() > 0
    project_(model)
    assert structural_penalty(model).item() < 1e-20
    assert structural_penalty(nn.Sequential(nn.Conv2d(3, 3, 3))).item() == 0.0


def test_pool_adds_brute_force():
    layer = SumPoolConv2d(12, 6, 3, stride=2, padding=1, groups=3, small_channels=2, small_kernel=2)
    size = 7
    c_full = 12 // 3
    wc, ws = layer.pool_window
    assert (wc, ws) == (3, 2)
    side = size + 2  # padded
    adds = 0
    pooled = 0
    for _group in range(3):
        for a in range(c_full):
            for p in range(side):
                for q in range(side):
                    if a + wc <= c_full and p + ws <= side and q + ws <= side:
                        terms = sum(1 for _c in range(a, a + wc) for _h in range(p, p + ws) for _w in range(q, q + ws))
                        adds += terms - 1
                        pooled += 1
    seen = {}

    def record(module, args):
        seen["shape"] = args[0].shape

    layer.conv.register_forward_pre_hook(record)
    layer(torch.zeros(1, 12, size, size))
    assert seen["shape"].numel() == pooled
    assert layer.pool_adds(size) == adds


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fvcore traces with torch.jit
def test_fvcore_counts_small_conv_only():
    from fvcore.nn import FlopCountAnalysis

    layer = SumPoolConv2d.from_structured(make(16, 8, 3, stride=2, padding=1, groups=4, c_g=3, n=2)).eval()
    x = torch.randn(1, 16, 9, 9, generator=gen(14))
    analysis = FlopCountAnalysis(layer, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    h_out = (9 + 2 - 3) // 2 + 1
    assert analysis.by_operator()["conv"] == 8 * 3 * 2 * 2 * h_out * h_out
    assert analysis.total() == 8 * 3 * 2 * 2 * h_out * h_out
    assert "aten::avg_pool3d" in analysis.unsupported_ops()


def test_direct_mode_trains():
    layer = SumPoolConv2d(8, 4, 3, padding=1, small_channels=3, small_kernel=2, bias=True)
    out = layer(torch.randn(2, 8, 8, 8, generator=gen(15)))
    assert out.shape == (2, 4, 8, 8)
    out.square().mean().backward()
    assert layer.conv.weight.grad.abs().max() > 0 and layer.conv.bias.grad is not None


def test_decompose_keeps_mode_and_shared_layers():
    conv = make(4, 4, 3, padding=1, c_g=2, n=2)
    model = nn.Sequential(conv, nn.ReLU(), conv).train()
    out = decompose(model)
    assert out.training and out[0].training and out[0] is out[2]
    assert not decompose(model.eval())[0].training


@pytest.mark.parametrize("kwargs, name", [
    ({"small_channels": 0, "small_kernel": 1}, "small_channels"),
    ({"small_channels": 5, "small_kernel": 1}, "small_channels"),
    ({"small_channels": 2, "small_kernel": 4}, "small_kernel"),
    ({"small_channels": 2, "small_kernel": 0}, "small_kernel"),
    ({"small_channels": 2, "small_kernel": 2, "groups": 3}, "groups"),
])
@pytest.mark.parametrize("cls", [StructuredConv2d, SumPoolConv2d])
def test_bad_arguments_name_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(8, 4, 3, **{"groups": 2, **kwargs})
