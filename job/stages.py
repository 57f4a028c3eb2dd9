"""Seconds and peak memory per stage of a run, one log line each.

Each stage's peak is the most resident memory the process held during that stage: on Linux
the kernel's high-water mark is reset at the start of a stage (``/proc/self/clear_refs``)
and read at its end (``VmHWM``); elsewhere the process's peak so far stands in.
"""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (since the last stage began, on Linux),
    in MiB."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.M)
    except OSError:
        found = None
    if found:
        return int(found[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Start a new high-water mark at the current resident memory (Linux)."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


class Stages:
    """Times each stage of a run, logs one line per stage, and keeps the figures."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_mib: dict[str, float] = {}
        self.started = time.perf_counter()
        self._before = peak_rss_mib()  # imports and whatever came before the first stage

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("stage %s ...", name)
        _reset_peak()
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        peak = peak_rss_mib()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + took, 3)
        self.peak_mib[name] = round(max(self.peak_mib.get(name, 0.0), peak), 1)
        log.info("stage %s: %.1f s (peak RSS %.0f MiB)", name, took, peak)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)

    @property
    def overall_peak_mib(self) -> float:
        """The most resident memory of the run: the largest stage peak (or the memory held
        before the first stage, if more)."""
        return round(max([self._before, peak_rss_mib(), *self.peak_mib.values()]), 1)


def timed(stages: Stages | None, name: str) -> contextlib.AbstractContextManager[None]:
    """``stages.stage(name)``, or nothing where there are no stages to time."""
    return stages.stage(name) if stages is not None else contextlib.nullcontext()
