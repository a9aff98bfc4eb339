"""The training path is chosen by timing, with plain PyTorch as a candidate; compiling only where it can pay."""

from __future__ import annotations

import copy
import dataclasses
import json
import time

import pytest
import torch
import torch.nn.functional as F

from igcnas.models import build_model
from igcnas.models.training_path import (CHOICE_SHARE, CHOICE_STEPS, COMPILE_PAYBACK, EAGER_PATHS, MIN_TIMED_STEPS, PLAIN,
                                         DecisionCache, TrainingPath, apply_path, compile_estimate_seconds,
                                         decide_training_path, decision_key, prepare_for_training)
from igcnas.models.decision_cache import kind_key
from tests.models.test_blocks import small_config

SHAPE = (3, 32, 32)
LONG = 1_000_000  # steps: long enough to time the candidates and to try a compile


@pytest.fixture
def model():
    return build_model(small_config("igcv2"), seed=0)


def timer_from(ms_by_name: dict[str, float], seen: list[dict] | None = None):
    """A timer that runs every step once (a broken candidate would raise) and reports the given times."""

    def time_steps(steps, repeats):
        for step in steps.values():
            step()
        if seen is not None:
            seen.append(dict(steps))
        return {name: ms_by_name[name] / 1e3 for name in steps}

    return time_steps


class SlowFirstCall(torch.nn.Module):
    """A stand-in for a compiled module: the same function, its first call half a second late."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.5)
        return self.inner(x)


def no_compile(module, device):
    raise AssertionError("compiled although the training cannot pay for it")


def test_every_candidate_has_a_name_that_reads_back():
    names = [p.name for p in EAGER_PATHS]
    assert names[0] == "plain" and len(set(names)) == len(EAGER_PATHS)
    for path in (*EAGER_PATHS, *(TrainingPath(p.layout, p.blocks, True) for p in EAGER_PATHS)):
        assert TrainingPath.from_name(path.name) == path
    with pytest.raises(ValueError, match="training path 'fused'"):
        TrainingPath.from_name("fused")


@pytest.mark.parametrize("fastest", [p.name for p in EAGER_PATHS])
def test_the_path_timed_fastest_is_chosen_plain_included(model, fastest):
    times = {p.name: 10.0 for p in EAGER_PATHS} | {fastest: 5.0}
    decision = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                                    time_steps=timer_from(times), cache=DecisionCache(path=None))
    assert decision.path.name == fastest
    assert decision.step_ms == times


def test_a_variant_within_the_margin_of_plain_loses_to_plain(model):
    times = {"plain": 10.0, "timed-blocks": 9.9, "channels_last": 11.0, "channels_last+timed-blocks": 9.8}
    decision = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                                    time_steps=timer_from(times), cache=DecisionCache(path=None))
    assert decision.path == PLAIN and "beat plain" in decision.reason


def test_a_training_of_a_few_steps_is_neither_timed_nor_compiled(model):
    def never(steps, repeats):
        raise AssertionError("timed a training too short to be worth it")

    few = MIN_TIMED_STEPS - 1
    decision = decide_training_path(model, SHAPE, batch=4, expected_steps=few, time_steps=never,
                                    compiler=no_compile, cache=DecisionCache(path=None))
    assert decision.path == PLAIN and "not worth timing" in decision.reason
    prepared = prepare_for_training(model, SHAPE, batch=4, expected_steps=few, time_steps=never,
                                    compiler=no_compile, cache=DecisionCache(path=None))
    assert prepared.forward is model and prepared.memory_format == torch.contiguous_format


def test_short_trainings_share_one_timing_per_family_and_never_compile():
    """A search's short trials: the first network of a family is timed, later ones of that family take its
    decision without timing, another family is timed afresh; none compiles."""
    cache = DecisionCache(path=None)
    seen: list[dict] = []
    times = {p.name: 10.0 for p in EAGER_PATHS} | {"channels_last": 4.0}
    short = int(CHOICE_STEPS / CHOICE_SHARE) - 1
    decisions = []
    for family, blocks in (("igcv2", 1), ("igcv2", 2), ("igcv1", 1)):  # the second: another igcv2 network
        config = small_config(family)
        config = config.replace(stages=tuple(dataclasses.replace(s, blocks=blocks) for s in config.stages))
        decisions.append(decide_training_path(build_model(config, seed=0), SHAPE, batch=4, expected_steps=short,
                                              time_steps=timer_from(times, seen), compiler=no_compile, cache=cache))
    assert [d.path for d in decisions] == [TrainingPath("channels_last")] * 3
    assert [d.from_cache for d in decisions] == [False, True, False] and len(seen) == 2
    assert "as timed for this kind" in decisions[1].reason


def test_a_short_training_never_compiles_however_slow_its_steps():
    """Short by its steps, long by its seconds (10 s steps): the compile rule alone would try it."""
    model = build_model(small_config("igcv2"), seed=0)
    short = int(CHOICE_STEPS / CHOICE_SHARE) - 1
    assert short * 10.0 >= COMPILE_PAYBACK * compile_estimate_seconds(model)
    times = {p.name: 10_000.0 for p in EAGER_PATHS}
    decision = decide_training_path(model, SHAPE, batch=4, expected_steps=short, time_steps=timer_from(times),
                                    compiler=no_compile, cache=DecisionCache(path=None))
    assert decision.path == PLAIN and decision.compile_seconds is None


def test_plain_structured_and_deployed_networks_of_a_family_are_different_kinds():
    from tests.models.test_structured_networks import structured

    config = small_config("igcv2")
    plain = build_model(config, seed=0)
    training = build_model(structured(config, ((2, 2), (1, 2))), seed=0)
    deployed = build_model(structured(config, ((2, 2), (1, 2))), seed=0, form="deployed")
    cpu = torch.device("cpu")
    kinds = {kind_key(m, SHAPE, 4, cpu) for m in (plain, training, deployed)}
    assert len(kinds) == 3
    wider = build_model(config.replace(stages=tuple(dataclasses.replace(s, blocks=1) for s in config.stages)), seed=0)
    assert kind_key(wider, SHAPE, 4, cpu) == kind_key(plain, SHAPE, 4, cpu)
    assert kind_key(plain, SHAPE, 4, cpu, "bf16") != kind_key(plain, SHAPE, 4, cpu)


def test_the_kind_keeps_the_decision_of_its_first_network(model):
    cache = DecisionCache(path=None)
    cpu = torch.device("cpu")
    first = {p.name: 10.0 for p in EAGER_PATHS} | {"channels_last": 4.0}
    later = {p.name: 10.0 for p in EAGER_PATHS} | {"timed-blocks": 4.0}
    decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                         time_steps=timer_from(first), cache=cache)
    other = build_model(small_config("igcv2").replace(
        stages=tuple(dataclasses.replace(s, blocks=1) for s in small_config("igcv2").stages)), seed=0)
    decide_training_path(other, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                         time_steps=timer_from(later), cache=cache)
    assert cache.get(kind_key(model, SHAPE, 4, cpu))["path"] == "channels_last"


def test_a_training_shorter_than_the_compile_payback_is_timed_but_not_compiled(model):
    times = {p.name: 10.0 for p in EAGER_PATHS} | {"channels_last": 4.0}
    estimate = compile_estimate_seconds(model)
    steps = int(COMPILE_PAYBACK * estimate / (4.0 / 1e3)) - 1  # just short of paying back
    decision = decide_training_path(model, SHAPE, batch=4, expected_steps=steps, time_steps=timer_from(times),
                                    compiler=no_compile, cache=DecisionCache(path=None))
    assert decision.path == TrainingPath("channels_last") and "not compiled" in decision.reason


def test_a_long_training_compiles_and_keeps_it_only_when_faster(model):
    compiled: list[torch.nn.Module] = []

    def fake_compile(module, device):  # the same module: what matters here is the decision
        compiled.append(module)
        return module

    cases = {2.0: True, 9.9: False}  # compiled step ms vs the best eager path's 10 ms
    for compiled_ms, kept in cases.items():
        times = {p.name: 20.0 for p in EAGER_PATHS} | {"channels_last": 10.0, "channels_last+compiled": compiled_ms}
        decision = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, time_steps=timer_from(times),
                                        compiler=fake_compile, cache=DecisionCache(path=None))
        assert decision.path == TrainingPath("channels_last", compiled=kept), decision.reason
        assert decision.compile_seconds is not None and decision.compile_seconds >= 0
    assert len(compiled) == len(cases)


def test_a_decision_is_kept_per_machine_and_network_and_not_timed_again(model, tmp_path, monkeypatch):
    file = tmp_path / "cache" / "training-paths.json"
    seen: list[dict] = []
    times = {p.name: 10.0 for p in EAGER_PATHS} | {"timed-blocks": 5.0}
    first = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                                 time_steps=timer_from(times, seen), cache=DecisionCache(path=file))
    assert not first.from_cache and len(seen) == 1
    stored = json.loads(file.read_text())
    cpu = torch.device("cpu")
    assert set(stored) == {decision_key(model, SHAPE, 4, cpu), kind_key(model, SHAPE, 4, cpu)}
    again = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                                 time_steps=timer_from(times, seen), cache=DecisionCache(path=file))
    assert again.from_cache and again.path == first.path and len(seen) == 1
    # another batch, another network, another thread count: timed afresh
    other = build_model(small_config("igcv1"), seed=0)
    decide_training_path(other, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                         time_steps=timer_from(times, seen), cache=DecisionCache(path=file))
    decide_training_path(model, SHAPE, batch=8, expected_steps=LONG, allow_compile=False,
                         time_steps=timer_from(times, seen), cache=DecisionCache(path=file))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                             time_steps=timer_from(times, seen), cache=DecisionCache(path=file))
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 4 and len(json.loads(file.read_text())) == 8  # each network and each kind


def test_a_measured_compile_is_reused_only_where_its_gain_pays_for_it(model):
    cache = DecisionCache(path=None)
    times = {p.name: 20.0 for p in EAGER_PATHS} | {"plain": 10.0, "compiled": 5.0}
    first = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, time_steps=timer_from(times),
                                 compiler=lambda m, d: SlowFirstCall(m), cache=cache)
    assert first.path == TrainingPath(compiled=True)
    seconds = first.compile_seconds
    assert seconds >= 0.5
    # a gain of 5 ms per step pays for the compile after seconds / 0.005 steps
    long = decide_training_path(model, SHAPE, batch=4, expected_steps=int(seconds / 0.005) + 10,
                                compiler=no_compile, cache=cache)
    short = decide_training_path(model, SHAPE, batch=4, expected_steps=int(seconds / 0.005) - 10,
                                 compiler=no_compile, cache=cache)
    assert long.from_cache and long.path.compiled
    assert short.from_cache and short.path == PLAIN


@pytest.mark.parametrize("path", EAGER_PATHS, ids=lambda p: p.name)
def test_every_path_trains_the_same_function(model, path):
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3])

    def loss_and_grads(module, inp):
        module.zero_grad(set_to_none=True)
        loss = F.cross_entropy(module(inp), y)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}

    reference = copy.deepcopy(model).train()
    candidate = copy.deepcopy(model).train()
    forward = apply_path(candidate, path, SHAPE, batch=4, device=torch.device("cpu"))
    loss_ref, grads_ref = loss_and_grads(reference, x)
    loss, grads = loss_and_grads(forward, x.contiguous(memory_format=path.memory_format))
    assert torch.allclose(loss, loss_ref, atol=1e-5)
    for name, grad in grads_ref.items():
        assert torch.allclose(grads[name], grad, atol=1e-4), name


def test_timed_for_real_the_decision_names_a_candidate_and_its_times(model):
    decision = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                                    cache=DecisionCache(path=None))
    assert decision.path in EAGER_PATHS
    assert set(decision.step_ms) == {p.name for p in EAGER_PATHS} and min(decision.step_ms.values()) > 0
    fastest = min(decision.step_ms, key=decision.step_ms.get)
    assert decision.path.name in (fastest, "plain")


@pytest.mark.slow
def test_a_real_compile_trains_the_same_function_and_other_batch_sizes_run_eager(model):
    """torch.compile for real (tens of seconds): compiled output equals eager; a smaller batch does not
    compile again (it runs through the eager model that shares the parameters)."""
    compiles: list[int] = []

    def counting_compile(module, device):
        compiled = torch.compile(module, dynamic=False)
        compiles.append(1)
        return compiled

    times = {p.name: 20.0 for p in EAGER_PATHS} | {"plain": 10.0, "compiled": 5.0}
    prepared = prepare_for_training(model, SHAPE, batch=4, expected_steps=LONG, time_steps=timer_from(times),
                                    compiler=counting_compile, cache=DecisionCache(path=None))
    assert prepared.decision.path == TrainingPath(compiled=True) and prepared.forward is not model
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(4))
    model.eval()
    with torch.no_grad():
        eager = model(x)
    model.train()
    prepared.forward.eval()
    with torch.no_grad():
        assert torch.allclose(prepared(x), eager, atol=1e-4)
        assert torch.allclose(prepared(x[:3]), eager[:3], atol=1e-4)
    assert len(compiles) == 2  # once while deciding, once for the model itself


def test_a_network_decided_without_compiling_is_compiled_by_its_first_long_training(model):
    cache = DecisionCache(path=None)
    seen: list[dict] = []
    times = {p.name: 20.0 for p in EAGER_PATHS} | {"plain": 10.0, "compiled": 5.0}
    eager = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, allow_compile=False,
                                 time_steps=timer_from(times, seen), cache=cache)
    assert eager.path == PLAIN and eager.compile_seconds is None
    short = decide_training_path(model, SHAPE, batch=4, expected_steps=10, compiler=no_compile, cache=cache)
    assert short.from_cache and short.path == PLAIN
    compiled = decide_training_path(model, SHAPE, batch=4, expected_steps=LONG, time_steps=timer_from(times, seen),
                                    compiler=lambda m, d: m, cache=cache)
    assert compiled.path == TrainingPath(compiled=True) and compiled.compile_seconds is not None
    assert [set(steps) for steps in seen] == [{p.name for p in EAGER_PATHS}, {"plain", "compiled"}]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_on_cuda_every_candidate_is_timed_on_the_device_and_trains_there(model):
    device = torch.device("cuda")
    model = model.to(device)
    decision = decide_training_path(model, SHAPE, batch=8, expected_steps=LONG, allow_compile=False, device=device,
                                    cache=DecisionCache(path=None))
    assert set(decision.step_ms) == {p.name for p in EAGER_PATHS} and decision.path in EAGER_PATHS
    prepared = prepare_for_training(model, SHAPE, batch=8, expected_steps=LONG, allow_compile=False, device=device,
                                    cache=DecisionCache(path=None))
    x = torch.randn(8, *SHAPE, device=device).contiguous(memory_format=prepared.memory_format)
    F.cross_entropy(prepared(x), torch.zeros(8, dtype=torch.long, device=device)).backward()
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in model.parameters() if p.requires_grad)
