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


@pytest.mark.parametrize(("count", "chunk", "steps"), [
    (7, 3, [0, 3, 6, 7]),
    (6, 3, [0, 3, 6]),
    (2, 1024, [0, 2]),
])
def test_the_known_image_index_build_reports_progress(
        monkeypatch: pytest.MonkeyPatch, count: int, chunk: int, steps: list[int]) -> None:
    import numpy as np

    import s2l_scan.extraction.index as index_module
    from s2l_scan.extraction.index import BUILD_STAGE, KnownImageIndex, pooled_embedding

    monkeypatch.setattr(index_module, "_BUILD_CHUNK", chunk)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    seen: list[tuple[str, int, int]] = []
    with reporting(lambda *call: seen.append(call)):
        index = KnownImageIndex.build([(f"{i}.png", p) for i, p in enumerate(pixels)])
    assert seen == [(BUILD_STAGE, done, count) for done in steps]
    # embedding in chunks gives the embeddings of one call (the oracle: pooling all at once)
    np.testing.assert_array_equal(index._index.reconstruct_n(0, count),
                                  pooled_embedding(pixels, 8))


def test_the_extraction_search_reports_progress_per_domain() -> None:
    from types import SimpleNamespace

    import numpy as np

    from s2l_scan.extraction.index import KnownImageIndex
    from s2l_scan.probes.extraction import ExtractionSettings, run_extraction, search_stage

    rng = np.random.default_rng(1)
    known = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    index = KnownImageIndex.build([(f"k{i}.png", p) for i, p in enumerate(known)])
    domains = [SimpleNamespace(name=f"d{i}", prompt=f"p{i}") for i in range(3)]
    seen: list[tuple[str, int, int]] = []
    with reporting(lambda *call: seen.append(call)):
        records = run_extraction(None, domains, index, ExtractionSettings(samples=2), seed=0,
                                 probe="lora", evidence_dir=None,
                                 generate=lambda prompt, key: known[:2])
    assert len(records) == 3 and all(r.extracted == 2 for r in records)  # exact copies
    assert seen == [(search_stage("lora"), done, 3) for done in range(4)]
    assert "lora" in search_stage("lora") and "released" in search_stage(None)
