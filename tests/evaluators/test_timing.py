"""The one timer (igcnas.evaluators.timing): it stops only once blocks ran at full speed, and says when none did.

The machine's phases are simulated: the probe is replaced by one that reports a slow or a fast machine on a
schedule, and the timed call really runs longer while the simulated machine is slow. Nothing here asserts a
speed of this machine; the figures compared are the simulated call's own two durations.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import pytest

from igcnas.evaluators import timing


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


class Machine:
    """A probe that reports ``slow_probes`` slow probes (60 us) first, then fast ones (35 us)."""

    def __init__(self, slow_probes: int) -> None:
        self.probes, self.slow_probes = 0, slow_probes

    @property
    def slow(self) -> bool:
        return self.probes < self.slow_probes

    def probe(self) -> float:
        self.probes += 1
        return 60.0 if self.slow else 35.0

    def call(self, fast_ms: float):
        return lambda: busy(fast_ms * (2.5 if self.slow else 1.0))


@pytest.fixture
def machine(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no reference from earlier processes
    monkeypatch.setattr(timing._ProbeState, "fastest_us", float("inf"))
    monkeypatch.setattr(timing._ProbeState, "seen_us", float("inf"))
    monkeypatch.setattr(timing._ProbeState, "recorded_us", float("inf"))
    monkeypatch.setattr(timing._ProbeState, "loaded", False)

    def make(slow_probes: int) -> Machine:
        m = Machine(slow_probes)
        monkeypatch.setattr(timing, "_probe_once", m.probe)
        return m
    return make


def test_blocks_on_a_slow_machine_do_not_end_the_timing(machine):
    m = machine(slow_probes=60)
    timing.note_reference(35.0)  # a latency table's probe: the machine's full speed
    result = timing.time_call(m.call(0.2), threads=1)
    assert not result.contended and result.fast_blocks >= timing.MIN_FAST_BLOCKS
    assert result.blocks > result.fast_blocks  # the slow blocks were taken, and did not count
    assert result.ms == pytest.approx(0.2, rel=0.25)  # the full-speed cost, not the slow one (0.5 ms)


def test_a_machine_slow_throughout_gives_a_figure_marked_contended(machine):
    m = machine(slow_probes=10**9)
    timing.note_reference(35.0)
    start = time.perf_counter()
    result = timing.time_call(m.call(0.2), threads=1, max_seconds=0.5)
    assert time.perf_counter() - start < 3.0  # the time allowed bounds it
    assert result.contended and result.fast_blocks == 0 and result.ms > 0.4


def test_calls_timed_in_turns_keep_their_order_and_share_the_reference(machine, tmp_path):
    m = machine(slow_probes=0)
    results = timing.time_calls([m.call(0.3), m.call(0.1), m.call(0.2)], threads=1)
    assert [round(r.ms, 1) for r in results] == [0.3, 0.1, 0.2]
    assert all(not r.contended for r in results)
    # The fastest probe is kept for later processes (a process starting in a slow phase would misjudge it).
    assert timing._cached_reference() == 35.0


# Run in a fresh process: whether freed memory is kept is a setting of the whole process, made once.
_HEAP_PROBE = r"""
import ctypes, json
from igcnas.evaluators.timing import steady_memory, time_call

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
time_call(lambda: None, max_seconds=0.05)
block = libc.malloc(16 << 20)
mapped = libc.mallinfo2().hblkhd >= 16 << 20  # a block of its own, given back to the system when freed
libc.free(block)
print(json.dumps({"kept": steady_memory(), "mapped": mapped, "free_in_heap": libc.mallinfo2().fordblks}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc settings are glibc's")
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.slow
def test_timing_keeps_freed_memory_in_the_heap_unless_told_not_to(keep):
    """After the timer ran, a 16 MiB block comes from the heap and stays there once freed, so that PyTorch's
    per-call activations are not faulted in afresh on every call; IGCNAS_TIMER_KEEP_MEMORY=0 leaves glibc's
    defaults (the comparison arm of bench/latency_prediction.py)."""
    env = {**os.environ, "IGCNAS_TIMER_KEEP_MEMORY": "1" if keep else "0"}
    done = subprocess.run([sys.executable, "-c", _HEAP_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    heap = json.loads(done.stdout.strip().splitlines()[-1])
    assert heap["kept"] is keep
    if keep:
        assert not heap["mapped"] and heap["free_in_heap"] >= 16 << 20


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_calls_are_timed_on_the_threads_asked_for_or_as_set(machine, threads):
    """torch.utils.benchmark's Timer would run a call on one thread unless told: None must mean "as set"."""
    import torch

    machine(0)
    seen: set[int] = set()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        timing.time_call(lambda: seen.add(torch.get_num_threads()), threads=threads, max_seconds=0.2)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert seen == {3 if threads is None else threads}
