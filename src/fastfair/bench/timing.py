"""Timing helpers shared by the benchmarks: interleaved round-robin repeats, medians, machine description.

Honest timing on a shared, noisy machine: compare as ratios measured in the same process run, alternate the
contenders, report the median of several repeats. :func:`interleaved` does exactly that: every task is run
once as a warm-up (not counted), then in each repeat every task runs once, in an order rotated by one position
per repeat, so that no contender is always first (cold caches) or last (a background job that just started).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Timing:
    """Wall-clock seconds of the counted runs of one task, and the value its last run returned."""

    seconds: list[float] = field(default_factory=list)
    warmup_seconds: float = float("nan")
    result: Any = None
    #: True when the task was so slow that its warm-up run is its only (counted) run
    warmup_counted: bool = False

    @property
    def median(self) -> float:
        """Median of the counted runs (NaN when there were none)."""
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def repeats(self) -> int:
        return len(self.seconds)


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued CUDA work, so that wall-clock time covers it (no-op on the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any],
    device: torch.device | str | None = None,
    timer: Callable[[Any, float], float] | None = None,
) -> tuple[float, Any]:
    """Run ``fn()`` once; return (seconds, its value). See :func:`interleaved` for ``timer``."""
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    wall = time.perf_counter() - start
    return (wall if timer is None else float(timer(value, wall))), value


def repeat_counts(
    warmup_seconds: Mapping[str, float], repeats: int, budget_s: float | None
) -> dict[str, int]:
    """Counted repeats per task: ``repeats``, cut down for a task whose warm-up says that ``repeats`` runs of
    it would take longer than ``budget_s`` seconds -- to ``budget_s // warm-up`` runs, and to 0 when a single
    run exceeds the budget (the warm-up run is then counted instead). Pure function."""
    out = {}
    for name, warm in warmup_seconds.items():
        count = repeats
        if budget_s is not None and warm > 0 and warm * repeats > budget_s:
            count = max(0, min(repeats, int(budget_s // warm)))
        out[name] = count
    return out


def round_robin_order(names: list[str], repeat: int) -> list[str]:
    """The order of the tasks in repeat number ``repeat``: ``names`` rotated left by ``repeat``. Pure."""
    if not names:
        return []
    k = repeat % len(names)
    return names[k:] + names[:k]


def interleaved(
    tasks: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    budget_s: float | None = None,
    device: torch.device | str | None = None,
    progress: Any = None,
    timer: Callable[[Any, float], float] | None = None,
) -> dict[str, Timing]:
    """Time every task ``repeats`` times, round-robin (A B C, B C A, C A B, ...), after ``warmup`` runs each.

    ``budget_s`` caps the counted time of one task: a task whose warm-up run took ``t`` seconds is repeated
    only ``budget_s // t`` times when ``t · repeats > budget_s``; when even one run exceeds the budget, its
    warm-up run is counted as its only run (``Timing.warmup_counted``; for runs that long, warm-up effects are
    negligible). ``progress`` is anything with ``update(k)`` (a tqdm bar); it advances once per run.
    ``timer(value, wall)``, if given, turns a run's return value and wall time into the seconds recorded (e.g.
    the epoch time a training run measured itself, without its set-up and evaluation).
    """
    names = list(tasks)
    timings = {name: Timing() for name in names}
    for name in names:
        for _ in range(max(1, warmup)):
            seconds, value = time_call(tasks[name], device, timer)
            timings[name].warmup_seconds = seconds
            timings[name].result = value
            if progress is not None:
                progress.update(1)
    counts = repeat_counts({k: t.warmup_seconds for k, t in timings.items()}, repeats, budget_s)
    for name, count in counts.items():
        if count == 0:
            timings[name].seconds.append(timings[name].warmup_seconds)
            timings[name].warmup_counted = True
    if progress is not None and hasattr(progress, "total") and progress.total is not None:
        progress.total -= sum(repeats - c for c in counts.values())
        progress.refresh()
    for rep in range(repeats):
        for name in round_robin_order(names, rep):
            if timings[name].warmup_counted or timings[name].repeats >= counts[name]:
                continue
            seconds, value = time_call(tasks[name], device, timer)
            timings[name].seconds.append(seconds)
            timings[name].result = value
            if progress is not None:
                progress.update(1)
    return timings


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s "Model name"), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, torch version and threads, load at the time."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every platform
        info["load_average_1m"] = None
    return info


def available_memory_bytes() -> int | None:
    """Memory a new allocation can get without swapping: Linux's ``MemAvailable`` (``/proc/meminfo``), else the
    physical memory size (``sysconf``); ``None`` where neither is known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def describe_machine(info: Mapping[str, Any]) -> str:
    """One line: ``AMD EPYC, 2 cores, torch 2.13.0+cpu (2 threads), load 1.2``."""
    text = f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads)"
    if info.get("cuda"):
        text += f", GPU {info['cuda']}"
    if info.get("load_average_1m") is not None:
        text += f", 1-min load average {info['load_average_1m']:g} at start"
    return text
