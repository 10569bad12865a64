"""Where a scan's time goes, from a py-spy profile: the share of samples in model compute.

    pip install py-spy   # from PyPI; not a dependency of s2l-scan
    py-spy record -r 20 --idle -f raw -o PROFILE -- s2l-scan scan reference --cache-dir EMPTY
    python -m benchmarks.profile_share PROFILE

Reads py-spy's raw (collapsed) output, one ``frame;frame;… count`` line per distinct stack
(outermost frame first), and puts each stack of the main thread in the first class whose
rule it meets, in the order of ``CLASSES``: a stack with any frame in torch's modules,
autograd, or diffusers' / transformers' models is model compute, whatever called it. Stacks
of other threads (rooted in ``threading.py``: a progress display's refresh, for example) are
counted apart; with ``--idle`` they are mostly waiting.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from pathlib import Path

Rule = Callable[[list[str]], bool]


def _any(*parts: str) -> Rule:
    return lambda frames: any(part in frame for frame in frames for part in parts)


def _innermost(*parts: str) -> Rule:
    """The innermost s2l-scan frame is in one of ``parts`` (for modules that call others:
    the unit store runs whole probes inside its ``get_or_compute``)."""
    def rule(frames: list[str]) -> bool:
        ours = [frame for frame in frames if "s2l_scan/" in frame]
        return bool(ours) and any(part in ours[-1] for part in parts)

    return rule


MODEL = ("torch/nn/modules/", "torch/autograd/", "diffusers/models/", "transformers/models/",
         "torch/_tensor.py", "torch/nn/functional.py")
CLASSES: list[tuple[str, Rule]] = [
    ("optimizer steps (Adam, gradient clipping)", _any("torch/optim/", "clip_grad")),
    ("model compute", _any(*MODEL)),
    ("imports", _any("<frozen importlib._bootstrap")),
    ("verdict maths (s2l_scan/functional/metrics.py)", _any("functional/metrics.py")),
    ("scheduler steps", _any("diffusers/schedulers/")),
    ("eidetic search, known-image index", _any("s2l_scan/extraction/", "functional/eidetic.py")),
    ("blind baseline", _innermost("blind")),
    ("unit store (read, write, hash)", _innermost("s2l_scan/units.py")),
    ("report, gate, rendering", _innermost("s2l_scan/report/", "s2l_scan/gate.py")),
    ("other Python", lambda frames: True),
]


def classify(lines: list[str]) -> tuple[Counter[str], int, Counter[str]]:
    """(samples per class of the main thread, samples of other threads, the innermost frames
    of the main thread's "other Python" samples)."""
    classes: Counter[str] = Counter()
    other_python: Counter[str] = Counter()
    threads = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if any("threading.py" in frame for frame in frames[:2]):
            threads += int(count)
            continue
        for name, rule in CLASSES:
            if rule(frames):
                classes[name] += int(count)
                if name == "other Python":  # where in s2l-scan, and the innermost frame
                    ours = [frame for frame in frames if "s2l_scan/" in frame]
                    other_python[f"{ours[-1] if ours else '-'} → {frames[-1]}"] += int(count)
                break
    return classes, threads, other_python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=12, help="innermost 'other Python' frames")
    args = parser.parse_args()
    classes, threads, other = classify(args.profile.read_text().splitlines())
    total = sum(classes.values())
    print(f"main thread: {total} samples; other threads: {threads}")
    print("| where | samples | share |\n|---|---|---|")
    for name, _ in CLASSES:
        print(f"| {name} | {classes[name]:,} | {classes[name] / max(total, 1):.3f} |")
    model = classes["model compute"]
    optimizer = classes["optimizer steps (Adam, gradient clipping)"]
    print(f"model compute share: {model / total:.3f}; with optimizer steps: "
          f"{(model + optimizer) / total:.3f}")
    print("innermost frames of 'other Python':")
    for frame, count in other.most_common(args.top):
        print(f"  {count:5d}  {frame}")


if __name__ == "__main__":
    main()
