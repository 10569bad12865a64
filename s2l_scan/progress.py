"""Progress of a scan's long steps, as one small interface: ``progress(stage, done, total)``.

A scan calls its progress callable with a stage name (``"scoring"``, ``"fine-tuning"``, ...), the
units done and the units in all. ``done`` going back (a new fine-tuning run after the last) starts
the stage again. Three implementations: :func:`quiet` (``-q``), :class:`PlainProgress`
(timestamped lines for CI logs and pytest: stage, done / total, elapsed, ETA) and, in a
terminal, ``s2l_scan.report.console.RichProgress`` (the one module that imports rich).

The stages report through :class:`~s2l_scan.stages.runtime.Runtime`'s ``progress``; code that
has no runtime (the fine-tuning loop, the sampler, the scorer, called from inside probes) calls
:func:`report`, which :func:`reporting` points at the same callable for the length of a scan.

>>> lines = []
>>> clock = iter([0.0, 30.0, 60.0]).__next__
>>> show = PlainProgress(lines.append, interval=10, clock=clock, stamp=lambda: "12:00:00")
>>> show("scoring", 0, 4); show("scoring", 2, 4); show("scoring", 4, 4)
>>> lines
['[12:00:00] scoring 0/4', '[12:00:00] scoring 2/4 (50%) 0:30 elapsed, ETA 0:30', \
'[12:00:00] scoring 4/4 (100%) done in 1:00']
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``."""


def quiet(stage: str, done: int, total: int) -> None:
    """Report nothing (``-q``, and every caller that passed no progress)."""
    return None


_CURRENT: ContextVar[ProgressFn] = ContextVar("s2l_scan_progress", default=quiet)


def report(stage: str, done: int, total: int) -> None:
    """Tell the scan's progress (set by :func:`reporting`; :func:`quiet` outside a scan)."""
    _CURRENT.get()(stage, done, total)


@contextlib.contextmanager
def reporting(progress: ProgressFn) -> Iterator[None]:
    """Route :func:`report` to ``progress`` inside the block (this thread and context only)."""
    token = _CURRENT.set(progress)
    try:
        yield
    finally:
        _CURRENT.reset(token)


_WHERE: ContextVar[str] = ContextVar("s2l_scan_progress_where", default="")


@contextlib.contextmanager
def at(where: str) -> Iterator[None]:
    """Name what the stages inside the block work on (``"noise probe, domain identity-1"``):
    :class:`PlainProgress` adds it to each line, so a CI log says which probe and domain a
    "fine-tuning" or "scoring" line is about."""
    token = _WHERE.set(where)
    try:
        yield
    finally:
        _WHERE.reset(token)


def where() -> str:
    """What :func:`at` named for the current block; empty outside one."""
    return _WHERE.get()


def duration(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``, e.g. ``duration(75) == '1:15'``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class _Stage:
    started: float
    done: int
    shown: float  # when its last line was written


class PlainProgress:
    """Plain timestamped lines, for logs that are no terminal (CI, pytest): a stage's start,
    its end, and between them a line at most every ``interval`` seconds, with the ETA
    extrapolated from the stage's rate so far."""

    def __init__(self, write: Callable[[str], None], interval: float = 15.0,
                 clock: Callable[[], float] = time.monotonic,
                 stamp: Callable[[], str] = lambda: datetime.now().strftime("%H:%M:%S"),
                 label: str = "") -> None:
        self._write, self._interval, self._clock, self._stamp = write, interval, clock, stamp
        self._label = label  # e.g. "s2l-scan: ", after the time stamp
        self._stages: dict[str, _Stage] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self._clock()
        if where():
            stage = f"{stage} [{where()}]"
        state = self._stages.get(stage)
        if state is None or done < state.done or state.done >= total:  # a (new) start
            self._stages[stage] = _Stage(started=now, done=done, shown=now)
            self._write(f"[{self._stamp()}] {self._label}{stage} {done}/{total}")
            return
        if done == state.done:
            return
        state.done = done
        if done >= total or now - state.shown >= self._interval:
            state.shown = now
            self._line(stage, done, total, now - state.started)

    def _line(self, stage: str, done: int, total: int, elapsed: float) -> None:
        text = (f"[{self._stamp()}] {self._label}{stage} {done}/{total} "
                f"({100 * done // max(1, total)}%)")
        if done >= total:
            text += f" done in {duration(elapsed)}"
        else:
            text += f" {duration(elapsed)} elapsed, ETA {duration(elapsed * (total - done) / done)}"
        self._write(text)
