import copy
import subprocess
import sys

import pytest
import torch

from igcnas.models import build_model
from igcnas.models.fast import (choose_strategies, fuse_batchnorm, optimize_for_inference,
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


def test_each_block_gets_the_strategy_its_timing_says_is_faster():
    """The choice follows the timer, per distinct block shape: each strategy wins where it is timed faster,
    and a block whose shape was decided before is not timed again."""
    model = build_model(small_config("igcv2"), seed=0)
    blocks = [m for m in model.modules() if hasattr(m, "pointwise") and len(m.pointwise) > 0]
    timed: list[dict] = []

    def composed_faster_first(steps, repeats):  # composed wins the first shape timed, chain every other
        for step in steps.values():
            step()  # the steps run: a broken probe would raise here
        timed.append(steps)
        return {"chain": 1.0, "composed": 2.0} if len(timed) > 1 else {"chain": 2.0, "composed": 1.0}

    counts = choose_strategies(model, (3, 32, 32), batch=4, repeats=1, time_each=composed_faster_first, choices={})
    assert sum(counts.values()) == len(blocks) and 1 <= len(timed) < len(blocks)  # shapes repeat: timed once each
    assert counts["composed"] >= 1 and counts["chain"] == len(blocks) - counts["composed"]
    assert blocks[0].strategy == "composed"
    for faster, slower in (("chain", "composed"), ("composed", "chain")):
        choose_strategies(model, (3, 32, 32), batch=4, repeats=1, choices={},
                          time_each=lambda steps, repeats, f=faster, s=slower: {f: 1.0, s: 2.0})
        assert {b.strategy for b in blocks} == {faster}
    with pytest.raises(ValueError, match="strategy must be one of"):
        set_strategy(model, "magic")


_MMAPPED_BLOCKS = """
import ctypes, sys
from igcnas.models.fast import configure_allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype, libc.malloc.restype = MallInfo2, ctypes.c_void_p
if sys.argv[1] == "configured":
    assert configure_allocator() is True and configure_allocator() is True
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(ctypes.c_void_p(block))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc statistics")
def test_allocator_configuration_keeps_large_blocks_in_the_heap():
    """glibc maps a 64 MiB block of its own by default (one more mmapped block); configured, it comes from the
    heap and stays there. Each case in a fresh process: the setting is process-wide."""
    mapped = {}
    for case in ("default", "configured"):
        out = subprocess.run([sys.executable, "-c", _MMAPPED_BLOCKS, case], capture_output=True, text=True, check=True)
        mapped[case] = int(out.stdout.strip())
    assert mapped == {"default": 1, "configured": 0}


def test_the_inference_variant_is_timed_once_per_machine_and_network(tmp_path, monkeypatch):
    from igcnas.models import fast
    from igcnas.models.decision_cache import DecisionCache

    model = build_model(small_config("igcv2"), seed=0).eval()
    timed: list[set] = []

    def fused_fastest(calls, repeats):  # also times chain vs composed per block: those are not counted
        for call in calls.values():
            call()
        if "reference" not in calls:
            return {name: 1.0 for name in calls}
        timed.append(set(calls))
        return {name: (1.0 if name == "fused" else 2.0) for name in calls}

    monkeypatch.setattr(fast, "time_in_turns", fused_fastest)
    file = tmp_path / "decisions.json"
    first = optimize_for_inference(model, (3, 32, 32), batch=2, cache=DecisionCache(path=file))
    assert first.igcnas_variant == "fused" and timed == [{"reference", "fused", "fused_channels_last"}]
    second = optimize_for_inference(model, (3, 32, 32), batch=2, cache=DecisionCache(path=file))
    assert second.igcnas_variant == "fused" and len(timed) == 1  # read back from the file, not timed again
    optimize_for_inference(model, (3, 32, 32), batch=3, cache=DecisionCache(path=file))
    assert len(timed) == 2  # another batch size is another decision
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(second(x), model(x), atol=1e-5)
