"""Baseline-only default scan with 1 and 2 processes, interleaved (docs/performance.md, item 5).

    python benchmarks/ab_processes.py REFERENCE_DIR [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import scan_wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    extra = ["--probes", "", "--extraction-samples", "0"]
    for repeat in range(args.repeats):
        for processes in (1, 2):
            seconds = scan_wall(args.reference / "model", args.reference / "data", "cpu",
                                processes, 1, extra)
            print(f"repeat {repeat} processes {processes}: {seconds:.1f} s, load average "
                  f"{os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
