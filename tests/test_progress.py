"""Plain progress lines (CI logs, pytest): when a line is written, and what it says."""

from __future__ import annotations

import pytest

from s2l_scan.progress import PlainProgress, duration, quiet, report, reporting


def _lines(calls: list[tuple[float, int, int]], interval: float = 10.0,
           stage: str = "fine-tuning") -> list[str]:
    times = iter([t for t, _, _ in calls])
    lines: list[str] = []
    show = PlainProgress(lines.append, interval=interval, clock=lambda: next(times),
                         stamp=lambda: "T", label="s2l-scan: ")
    for _, done, total in calls:
        show(stage, done, total)
    return lines


@pytest.mark.parametrize(("calls", "expected"), [
    # start, then at most one line per interval, then the end with its duration
    ([(0, 0, 100), (5, 10, 100), (12, 40, 100), (15, 50, 100), (30, 100, 100)],
     ["[T] s2l-scan: fine-tuning 0/100",
      "[T] s2l-scan: fine-tuning 40/100 (40%) 0:12 elapsed, ETA 0:18",
      "[T] s2l-scan: fine-tuning 100/100 (100%) done in 0:30"]),
    # a stage reported done at once: one start line, nothing else
    ([(0, 4, 4)], ["[T] s2l-scan: fine-tuning 4/4"]),
    # done going back starts the stage again (the next probe's fine-tuning)
    ([(0, 0, 2), (4, 2, 2), (5, 1, 2), (9, 2, 2)],
     ["[T] s2l-scan: fine-tuning 0/2", "[T] s2l-scan: fine-tuning 2/2 (100%) done in 0:04",
      "[T] s2l-scan: fine-tuning 1/2", "[T] s2l-scan: fine-tuning 2/2 (100%) done in 0:04"]),
    # a finished stage told again from the start: a new start line
    ([(0, 0, 3), (3, 3, 3), (70, 0, 3)],
     ["[T] s2l-scan: fine-tuning 0/3", "[T] s2l-scan: fine-tuning 3/3 (100%) done in 0:03",
      "[T] s2l-scan: fine-tuning 0/3"]),
    # ETA: the stage's mean rate so far, extrapolated (oracle: 3600 s · 3/1)
    ([(0, 0, 4), (3600, 1, 4)],
     ["[T] s2l-scan: fine-tuning 0/4", "[T] s2l-scan: fine-tuning 1/4 (25%) 1:00:00 "
                                       "elapsed, ETA 3:00:00"]),
])
def test_plain_lines(calls: list[tuple[float, int, int]], expected: list[str]) -> None:
    assert _lines(calls) == expected


def test_stages_are_timed_apart() -> None:
    times = iter([0.0, 1.0, 20.0, 21.0])
    lines: list[str] = []
    show = PlainProgress(lines.append, interval=10, clock=lambda: next(times), stamp=lambda: "T")
    show("a", 0, 2)
    show("b", 0, 2)
    show("a", 2, 2)
    show("b", 2, 2)
    assert lines == ["[T] a 0/2", "[T] b 0/2", "[T] a 2/2 (100%) done in 0:20",
                     "[T] b 2/2 (100%) done in 0:20"]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (75, "1:15"), (3725, "1:02:05")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_report_goes_where_reporting_points_and_nowhere_outside() -> None:
    seen: list[tuple[str, int, int]] = []
    report("x", 1, 2)  # outside a scan: quiet
    with reporting(lambda *call: seen.append(call)):
        report("x", 1, 2)
        with reporting(quiet):
            report("y", 1, 2)
    report("x", 2, 2)
    assert seen == [("x", 1, 2)]


def test_rich_bars_start_again_when_done_goes_back() -> None:
    from io import StringIO

    from rich.console import Console

    from s2l_scan.report.console import RichProgress

    console = Console(file=StringIO(), force_terminal=True, width=100)
    with RichProgress(console) as show:
        for done in (0, 50, 100, 10, 2):  # the second run's first step, then a new stage
            show("fine-tuning", done, 100)
        show("scoring", 3, 4)
        tasks = {task.description: task for task in show._bar.tasks}
    assert tasks["fine-tuning"].completed == 2 and tasks["fine-tuning"].total == 100
    assert tasks["scoring"].completed == 3
