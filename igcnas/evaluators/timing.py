"""The one timer for every latency igc-nas reports: blocks of calls taken only while the machine runs at full speed.

Why not a plain loop. On the 2-core cloud machines this project runs on, the speed of a core changes in
phases of a fraction of a second to several seconds, set by work outside the machine (a fixed pure-Python
loop runs in 45 us in one phase and 80-90 us in the other; the share of slow time went from 40% to 90%
within minutes; measured in ``bench/latency_noise.py``). A loop timed for a few milliseconds falls wholly
in one phase, so the same network timed in two processes differed by up to 2x, and no statistic over
consecutive samples (fastest, median) repeats.

What this timer does instead. A short reference workload (the *probe*, a fixed Python loop of about 35 us
at full speed) runs before and after every timed block of calls. Blocks are taken until
:data:`MIN_FAST_BLOCKS` of them ran at full speed (their probes within :data:`FAST_TOLERANCE` of the
fastest probe next to that call, itself within :data:`PHASE_TOLERANCE` of the fastest probe known on this
machine), or the time allowed runs out. The figure is the
**fastest block** (milliseconds per call): once the timing is known to have covered moments at full
speed, the fastest block is what a call costs at full speed. The probe decides when to stop; it does not
correct any figure.

Measured in fresh processes on the same 10 digits networks (``bench/latency_noise.py``, 3-4 processes
5-10 s apart; spread = (max - min) / median over processes, median / worst over networks): the old timer
(fastest of 9 consecutive 3-ms loops) moved 54% / 73% in PyTorch eager and 46-67% / 87-99% in ONNX
Runtime; this one 1.0% / 4.3% and 1.8% / 3.6% (networks timed in turns), 1.3% / 10.5% and 1.6% / 3.2%
(one network at a time). Taking the median of the full-speed blocks instead, or counting every block of
the fast phase (probes within 25% of the fastest), left 6-20% between processes.

When too few blocks were at full speed within the time allowed (a machine busy throughout),
:attr:`Timing.contended` says so: the figure may be high.

Between processes minutes apart PyTorch eager moves more than that (5-12% median in
``bench/latency_prediction.py``), partly by memory: with glibc's defaults each call's larger activations
are mapped and faulted in afresh, at a cost that changes with the host. The timer keeps freed memory in the
heap (:func:`steady_memory`). In the benchmark, three runs with it repeated within 2.9% / 4.1% (median,
digits / 32x32) and the three without it right after within 6.4% / 11.8%; a later three with it, on a
machine its own tables flagged as busy, 4.8% / 10.1%: what remains is the machine's.

Several calls (a table's parts) are timed together in turns (:func:`time_calls`), so that one slow phase
delays every call a little instead of one call a lot. Blocks are timed with ``torch.utils.benchmark``'s
``Timer`` (which also fixes the thread count for the duration).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from igcnas.files import atomic_write_text

__all__ = ["Timing", "time_call", "time_calls", "probe_us", "reference_us", "note_reference", "steady_memory",
           "FAST_TOLERANCE", "PHASE_TOLERANCE", "MIN_FAST_BLOCKS", "MAX_SECONDS", "MAX_GROUP_SECONDS", "BLOCK_MS"]

log = logging.getLogger(__name__)

# Which blocks ran at full speed. A probe's speed depends on the machine's phase and, by 10-20%, on what
# ran just before it (a probe after a large PyTorch block is slower than one after a small one, measured
# here). So each call is judged by its own probes: a block counts when its probes are within
# FAST_TOLERANCE of the fastest probe next to that call's blocks, and that fastest probe is itself within
# PHASE_TOLERANCE of the machine's fastest probe (the call was timed in a fast phase at least once: the
# slow phase's probes are 1.6-2.0x the fast phase's). Measured on the 2-core cloud machine: with one cut
# for every call (10% of the machine's fastest probe), 97% of a table's figures waited out their time.
FAST_TOLERANCE = 0.10
PHASE_TOLERANCE = 0.35
MIN_FAST_BLOCKS = 4  # blocks that count per figure
# How long a figure may wait for moments at full speed: per call, and for calls timed in turns together.
# IGCNAS_TIMER_MAX_SECONDS lowers both (the test suite sets it: its tables need figures, not good ones).
MAX_SECONDS = float(os.environ.get("IGCNAS_TIMER_MAX_SECONDS", "6"))
MAX_GROUP_SECONDS = max(MAX_SECONDS, min(30.0, 5 * MAX_SECONDS))
BLOCK_MS = 1.0  # a block runs the call for about this long (at least once)
_PROBE_LOOPS = 1500


def _probe_once() -> float:
    start = time.perf_counter()
    total = 0
    for i in range(_PROBE_LOOPS):
        total += i
    return (time.perf_counter() - start) * 1e6


class _ProbeState:
    """The fastest probe known to this process: the machine's fast-phase speed (it only ever goes down).

    A process that starts in a slow phase would take the slow speed for the fast one and count slow blocks;
    so the fastest probe is also kept between processes (:func:`_cached_reference`, for
    :data:`REFERENCE_HOURS`) and a latency table carries the one seen while it was built
    (:func:`note_reference`).
    """

    fastest_us: float = math.inf
    seen_us: float = math.inf  # this process's own fastest probe
    recorded_us: float = math.inf  # the machine's record as this process last read or wrote it
    loaded: bool = False


REFERENCE_HOURS = 12.0


def _reference_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "igcnas" / "timing-probe.json"


def _reference_key() -> str:
    from igcnas.models.onnx_export import cpu_name

    # The probe's speed depends on what runs before it: right after a timed block it runs 10-15% slower than
    # alone (measured here). Only probes next to blocks are ever taken, and the key names that kind.
    return f"{cpu_name()} | {platform.python_implementation()} {platform.python_version()} | probe after a block"


def _cached_reference() -> float:
    """The fastest probe recorded on this machine kind in the last :data:`REFERENCE_HOURS` (inf if none)."""
    try:
        data = json.loads(_reference_path().read_text(encoding="utf-8"))
        if data["key"] == _reference_key() and time.time() - float(data["at"]) < REFERENCE_HOURS * 3600:
            return float(data["fastest_us"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return math.inf


def _store_reference() -> None:
    """Record this process's fastest probe for later processes when it is faster than what is recorded.

    The file is read only when this process's probe beat what it last read or wrote (it runs after every
    group of timed calls, so that the record is not read every time).
    """
    if not _ProbeState.seen_us < _ProbeState.recorded_us:
        return
    _ProbeState.recorded_us = min(_ProbeState.recorded_us, _cached_reference())
    if not _ProbeState.seen_us < _ProbeState.recorded_us:
        return
    _ProbeState.recorded_us = _ProbeState.seen_us
    path = _reference_path()
    try:
        atomic_write_text(path, json.dumps({"key": _reference_key(), "fastest_us": _ProbeState.seen_us,
                                            "at": time.time()}))
    except OSError as exc:  # a read-only home: the reference stays this process's own
        log.debug("timing reference not stored: %s", exc)


def note_reference(fastest_us: float | None) -> None:
    """Take ``fastest_us`` (a latency table's probe) as a known fast-phase speed of this machine."""
    if fastest_us is not None and fastest_us > 0:
        _ProbeState.fastest_us = min(_ProbeState.fastest_us, float(fastest_us))


def reference_us() -> float:
    """The fastest probe known here (this process, the machine's record, tables noted): what blocks are
    compared with."""
    if not _ProbeState.loaded:
        _ProbeState.loaded = True
        _ProbeState.fastest_us = min(_ProbeState.fastest_us, _cached_reference())
    return _ProbeState.fastest_us


def probe_us() -> float:
    """One probe, in microseconds; also lowers this process's fastest probe."""
    value = _probe_once()
    _ProbeState.seen_us = min(_ProbeState.seen_us, value)
    _ProbeState.fastest_us = min(reference_us(), value)
    return value


@dataclass(frozen=True)
class Timing:
    """A figure (``ms`` per call: the fastest counted block) and how it was obtained.

    ``blocks``: blocks timed; ``fast_blocks``: those taken at full speed; ``median_ms``: their median (the
    other statistic, for comparison); ``contended``: fewer than half of :data:`MIN_FAST_BLOCKS` were taken
    at full speed in the time allowed, so the machine may never have been at full speed while timing and
    ``ms`` may be high (a warning sign).
    """

    ms: float
    median_ms: float
    blocks: int
    fast_blocks: int
    contended: bool


# glibc's mallopt parameters (malloc.h) and the values the timer sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_MMAP_BELOW = 32 << 20  # glibc's largest allowed mmap threshold on 64-bit
_KEEP_TRIM_BELOW = 1 << 30


class _Memory:
    steadied: bool | None = None  # None: not tried yet; False: not glibc, or refused


def steady_memory() -> bool:
    """Keep freed memory in this process's heap from now on (glibc only; once per process).

    Why. PyTorch eager allocates every call's activations afresh. With glibc's defaults, blocks above the
    mmap threshold (128 KiB at first) are mapped for each call and unmapped when freed, and the top of the
    heap is returned to the system once more than the trim threshold is free, so the next call faults its
    pages in again; what that costs on a shared cloud machine changes from minute to minute. Measured here on
    one 32x32 IGC-V3 network (activations of 512 KiB, one thread): across four processes the median block
    took 2.71-3.15 ms with glibc's defaults and 2.72-2.82 ms with the thresholds below, the slowest block
    3.42-3.48 and 2.80-3.02 ms. ONNX Runtime plans its own memory arena and repeats within 1.4% across
    processes either way. The effect is process-wide: a process that timed something keeps up to 1 GiB of
    freed memory for reuse instead of returning it. ``IGCNAS_TIMER_KEEP_MEMORY=0`` leaves glibc's defaults
    (for comparison: ``bench/latency_prediction.py --no-keep-memory``).
    """
    if _Memory.steadied is None:
        _Memory.steadied = False
        if os.environ.get("IGCNAS_TIMER_KEEP_MEMORY", "1") == "0":
            return False
        try:
            import ctypes

            mallopt = ctypes.CDLL(None).mallopt
            if platform.libc_ver()[0] == "glibc":
                _Memory.steadied = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_MMAP_BELOW)
                                        and mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM_BELOW))
        except (OSError, AttributeError) as exc:  # not glibc: the figures may move more between processes
            log.debug("malloc thresholds not set: %s", exc)
    return _Memory.steadied


def _calls_per_block(call: Callable[[], Any]) -> int:
    start = time.perf_counter()
    call()
    once_ms = (time.perf_counter() - start) * 1000.0
    return max(1, min(1 << 14, int(BLOCK_MS / max(once_ms, 1e-4))))


def time_calls(calls: Sequence[Callable[[], Any]], *, threads: int | None = None, warmup: int = 3,
               min_fast_blocks: int = MIN_FAST_BLOCKS, max_seconds: float | None = None) -> list[Timing]:
    """Milliseconds per call of each of ``calls``, blocks taken in turns (see the module docstring).

    ``threads``: PyTorch intra-op threads while timing (None: as set). ``max_seconds``: the time allowed
    for all of them (default :data:`MAX_SECONDS` per call, :data:`MAX_GROUP_SECONDS` at most).
    """
    from torch.utils.benchmark import Timer

    if not calls:
        return []
    steady_memory()
    limit = min(MAX_SECONDS * len(calls), MAX_GROUP_SECONDS) if max_seconds is None else max_seconds
    import torch

    # torch.utils.benchmark's Timer runs on ONE thread unless told otherwise: "as set" must be said explicitly
    # (without it, the fast path's choices were timed on one thread and then run on two).
    num_threads = torch.get_num_threads() if threads is None else threads
    timers = [Timer(stmt="call()", globals={"call": call}, num_threads=num_threads) for call in calls]
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)  # warm-ups and block sizing on the threads the blocks run on
    try:
        for call in calls:
            for _ in range(warmup):
                call()
        numbers = [_calls_per_block(call) for call in calls]
    finally:
        torch.set_num_threads(previous)
    samples: list[list[tuple[float, float]]] = [[] for _ in calls]  # (ms per call, the slower of its probes)
    pending = list(range(len(calls)))
    deadline = time.perf_counter() + limit
    while pending and time.perf_counter() < deadline:
        for i in pending:
            before = probe_us()
            ms = timers[i].timeit(numbers[i]).mean * 1000.0
            after = probe_us()
            samples[i].append((ms, max(before, after)))
        # Judged again every round: a faster probe seen later turns earlier blocks into slow ones.
        pending = [i for i in range(len(calls)) if _fast_count(samples[i]) < min_fast_blocks]
    _store_reference()
    return [_figure(s, min_fast_blocks) for s in samples]


def _fast_blocks(samples: list[tuple[float, float]]) -> list[float]:
    """The blocks (ms per call) of one call that ran at full speed (see FAST_TOLERANCE above)."""
    if not samples:
        return []
    own = min(probe for _, probe in samples)
    if own > reference_us() * (1.0 + PHASE_TOLERANCE):  # never timed in a fast phase
        return []
    return [ms for ms, probe in samples if probe <= own * (1.0 + FAST_TOLERANCE)]


def _fast_count(samples: list[tuple[float, float]]) -> int:
    return len(_fast_blocks(samples))


def _figure(samples: list[tuple[float, float]], min_fast_blocks: int) -> Timing:
    fast = sorted(_fast_blocks(samples))
    every = sorted(ms for ms, _ in samples)
    contended = len(fast) < max(1, min_fast_blocks // 2)
    if contended:
        log.debug("only %d of %d blocks at full speed: the figure may be high", len(fast), len(samples))
    return Timing(ms=every[0], median_ms=statistics.median(fast or every), blocks=len(samples),
                  fast_blocks=len(fast), contended=contended)


def time_call(call: Callable[[], Any], **kwargs: Any) -> Timing:
    """:func:`time_calls` for one call."""
    return time_calls([call], **kwargs)[0]
