"""s2l-scan benchmarks: every figure of docs/performance.md, measured in one run.

    python -m benchmarks [--quick] [--device auto|cpu|cuda] [--threads N] [--json FILE]

Prints one table: figure | measured | goal | met?. ``--quick`` (a few minutes on CPU) uses the
tiny reference preset, 100k vectors for the index and skips the full default scan; without it
the default reference model is used (built into a temporary folder, which is itself the build
figure) and the full default scan runs (tens of minutes on 2 CPU cores). Forward time is taken
by hooks on the UNet, VAE and text encoder that only this benchmark installs (with
``torch.cuda.synchronize`` on a GPU); the product has no timing code in its hot path.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    name: str
    measured: str
    goal: str
    met: bool | None  # None: informational, no goal


# --------------------------------------------------------------------------------------------
# forward timing (benchmark only)


class ForwardTimer:
    """Seconds spent inside the hooked modules' forwards (outermost call only)."""

    def __init__(self, device: str) -> None:
        self.seconds = 0.0
        self._cuda = device.startswith("cuda")
        self._depth = 0
        self._start = 0.0

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def pre(self, module: Any, args: Any) -> None:
        if self._depth == 0:
            self._sync()
            self._start = time.perf_counter()
        self._depth += 1

    def post(self, module: Any, args: Any, out: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._sync()
            self.seconds += time.perf_counter() - self._start

    def attach(self, pipeline: Any) -> None:
        vae = pipeline.vae
        modules = [pipeline.unet, pipeline.text_encoder, vae.encoder, vae.decoder]
        modules += [m for m in (getattr(vae, "quant_conv", None),
                                getattr(vae, "post_quant_conv", None)) if m is not None]
        for module in modules:
            module.register_forward_pre_hook(self.pre)
            module.register_forward_hook(self.post)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# the reference model


def build_reference(out: Path, preset: str, threads: int) -> float:
    """Build the reference preset into ``out`` as ``s2l-scan reference build`` does; seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "s2l_scan", "reference", "build", "--out", str(out),
                    "--preset", preset, "--threads", str(threads), "--json"],
                   check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# forward efficiency


def forward_efficiency(model_dir: Path, data_dir: Path, device: str, threads: int,
                       extraction_samples: int) -> list[Figure]:
    """Per attack: forward time ÷ wall time of the scan's whole stage for that attack
    (scoring every domain in shared batches, then its rows: AUC, bootstrap CI, calibration)."""
    from s2l_scan.attack import make_attack
    from s2l_scan.config import make_config
    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.io.model import load_pipeline
    from s2l_scan.stages.baselines import run_baselines
    from s2l_scan.stages.encode import encode_subject
    from s2l_scan.stages.extraction import extraction_records, known_index

    torch.set_num_threads(threads)
    config = make_config(device=device, threads=threads, probes="",
                         extraction_samples=extraction_samples)
    model = load_pipeline(model_dir, device=device)
    timer = ForwardTimer(device)
    timer.attach(model.pipeline)
    data = load_audit_data(data_dir, model.resolution)
    subject = encode_subject(model, data, config.batch_size, config.seed)
    figures = []
    for name in config.attacks:
        attack = make_attack(name, config.attack_options.get(name, {}), seed=config.seed)
        timer.seconds = 0.0
        _sync(device)
        started = time.perf_counter()
        run_baselines(subject, [attack], config)
        _sync(device)
        wall = time.perf_counter() - started
        figures.append(Figure(f"forward efficiency: {name}",
                              f"{timer.seconds / wall:.3f} ({timer.seconds:.1f} / {wall:.1f} s)",
                              "≥ 0.9", timer.seconds / wall >= 0.9))
    # extraction on the released model: generation (UNet + text encoder + VAE decode) + search
    index = known_index(data, config)
    timer.seconds = 0.0
    _sync(device)
    started = time.perf_counter()
    extraction_records(model.pipeline, list(data.domains), index, config)
    _sync(device)
    wall = time.perf_counter() - started
    figures.append(Figure(f"forward efficiency: extraction ({extraction_samples}/domain)",
                          f"{timer.seconds / wall:.3f} ({timer.seconds:.1f} / {wall:.1f} s)",
                          "≥ 0.9", timer.seconds / wall >= 0.9))
    return figures


# --------------------------------------------------------------------------------------------
# precision


def precision_check(model_dir: Path, data_dir: Path, device: str, threads: int) -> list[Figure]:
    """Half precision (bf16 on CPU, fp16 on GPU) vs float32: pooled AUC and score correlation."""
    from s2l_scan.attack import make_attack
    from s2l_scan.config import make_config
    from s2l_scan.devices import torch_dtype
    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.io.model import load_pipeline
    from s2l_scan.stages.baselines import run_baselines
    from s2l_scan.stages.encode import Subject, encode_domain

    half = "float16" if device.startswith("cuda") else "bfloat16"
    torch.set_num_threads(threads)
    runs = {}
    for dtype in ("float32", half):
        config = make_config(device=device, threads=threads, probes="", extraction_samples=0,
                             dtype=dtype, bootstrap=100)
        model = load_pipeline(model_dir, device=device, dtype=torch_dtype(dtype))
        data = load_audit_data(data_dir, model.resolution)
        attacks = [make_attack(n, config.attack_options.get(n, {}), seed=config.seed)
                   for n in config.attacks]
        encoded = {d.name: encode_domain(model, d, config.batch_size) for d in data.domains}
        subject = Subject(model, data, encoded, {name: 0.5 for name in [*encoded, "pooled"]})
        _sync(device)
        started = time.perf_counter()
        rows = run_baselines(subject, attacks, config)
        _sync(device)
        runs[dtype] = (time.perf_counter() - started,
                       {r.attack: r for r in rows if r.domain == ("pooled" if len(encoded) > 1
                                                                  else r.domain)})
    figures = []
    (t32, full), (th, low) = runs["float32"], runs[half]
    for attack, row in full.items():
        other = low[attack]
        scores32 = np.array(row.member_scores + row.nonmember_scores)
        scores_h = np.array(other.member_scores + other.nonmember_scores)
        r = float(np.corrcoef(scores32, scores_h)[0, 1])
        delta = abs(other.auc - row.auc)
        figures.append(Figure(f"{half} vs float32: {attack}",
                              f"|ΔAUC| {delta:.4f}, r {r:.4f}", "|ΔAUC| ≤ 0.01, r ≥ 0.99",
                              delta <= 0.01 and r >= 0.99))
    figures.append(Figure(f"{half} scoring time vs float32", f"{th:.1f} s vs {t32:.1f} s",
                          "—", None))
    return figures


# --------------------------------------------------------------------------------------------
# the default scan


def scan_wall(model_dir: Path, data_dir: Path, device: str, processes: int, threads: int,
              extra: list[str]) -> float:
    """Wall seconds of ``s2l-scan scan`` (fresh cache: SP sets are generated, not reused)."""
    from s2l_scan.parallel import free_port

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "S2L_CACHE_DIR": cache, "OMP_NUM_THREADS": str(threads)}
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                     str(processes), "--master-port", str(free_port())] if processes > 1 else
                    [sys.executable])
        command = [*launcher, "-m", "s2l_scan", "scan", str(model_dir), "--data",
                   str(data_dir), "--device", device, "--threads", str(threads), *extra]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                              check=False)
        wall = time.perf_counter() - started
    if done.returncode not in (0, 1) and processes == 1:
        raise RuntimeError(f"scan failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


# --------------------------------------------------------------------------------------------
# extraction index throughput


def index_throughput(count: int, queries: int = 256, repeats: int = 3) -> list[Figure]:
    """Queries per second of ``KnownImageIndex.matches`` (range search + exact verification +
    k-rule) vs FAISS's bare range search on the same index, interleaved, median of repeats."""
    from s2l_scan.extraction.index import KnownImageIndex, _radius, pooled_embedding
    from s2l_scan.extraction.sharded import build_sharded, open_sharded

    rng = np.random.default_rng(0)
    known = rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (queries, 16, 16, 3), dtype=np.uint8)
    planted = rng.choice(count, queries // 16, replace=False)  # 1 in 16 is a near-copy
    noise = rng.integers(-6, 7, (len(planted), 16, 16, 3))
    generated[: len(planted)] = np.clip(known[planted].astype(int) + noise, 0, 255)
    ids = [f"known/{i:07d}.png" for i in range(count)]
    index = KnownImageIndex.build(zip(ids, known, strict=True))
    delta = 0.1
    bare, full = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        embeddings = pooled_embedding(generated, index.embed_size)
        index._index.range_search(embeddings, _radius(delta, embeddings.shape[1]))
        bare.append(time.perf_counter() - started)
        index._neighbours.clear()  # copy counts are part of the work: no warm cache
        started = time.perf_counter()
        found = index.matches(generated, k=10, delta=delta)
        full.append(time.perf_counter() - started)
    b, f = statistics.median(bare), statistics.median(full)
    figures = [Figure(f"extraction search: matches vs bare FAISS ({count:,} vectors, "
                      f"{index.kind})",
                      f"{b / f:.3f} ({queries / f:,.0f} vs {queries / b:,.0f} queries/s, "
                      f"{len({m.generated_index for m in found})} matched)",
                      "≥ 0.9", b / f >= 0.9)]
    with tempfile.TemporaryDirectory() as folder:
        path = build_sharded(zip(ids, known, strict=True), Path(folder) / "idx",
                             shard_size=max(1, count // 4))
        del known
        sharded = open_sharded(path)
        times = []
        for _ in range(repeats):
            sharded._counts.clear()
            started = time.perf_counter()
            same = sharded.matches(generated, k=10, delta=delta)
            times.append(time.perf_counter() - started)
        s = statistics.median(times)
        figures.append(Figure("  on-disk sharded index (4 shards, mmap) vs bare FAISS",
                              f"{b / s:.3f} ({queries / s:,.0f} queries/s, identical: "
                              f"{same == found})", "exact", same == found))
    return figures


# --------------------------------------------------------------------------------------------
# scaling with the number of samples


def _scaled_data(source: Path, out: Path, factor: int, domains: int) -> Path:
    """The first ``domains`` domains of ``source`` with every image present ``factor`` times
    (as itself, mirrored, flipped and rotated: distinct images, same distribution)."""
    from PIL import Image

    transforms: list[Callable[[Image.Image], Image.Image]] = [
        lambda im: im, lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        lambda im: im.transpose(Image.Transpose.ROTATE_180)]
    for domain in sorted(p for p in source.iterdir() if p.is_dir() and p.name != "known"
                         )[:domains]:
        (out / domain.name).mkdir(parents=True)
        (out / domain.name / "prompt.txt").write_text((domain / "prompt.txt").read_text())
        for split in ("members", "nonmembers"):
            (out / domain.name / split).mkdir()
            for image in sorted((domain / split).iterdir()):
                with Image.open(image) as im:
                    for k in range(factor):
                        transforms[k](im).save(out / domain.name / split /
                                               f"{image.stem}-{k}.png")
    return out


_CHILD = """
import json, resource, sys, time, torch
from s2l_scan.config import make_config
from s2l_scan.session import ScanInputs, run_scan
device, threads = sys.argv[3], int(sys.argv[4])
config = make_config(device=device, threads=threads, probes="", extraction_samples=0)
started = time.perf_counter()
run_scan(ScanInputs(model=sys.argv[1], data=sys.argv[2]), config)
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda") else
        int(hwm[0].split()[1]) * 1024 if hwm else
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps({"seconds": seconds, "peak": peak}))
"""


def scaling(model_dir: Path, data_dir: Path, device: str, threads: int,
            domains: int) -> list[Figure]:
    """Baseline scan time and peak memory at 1×, 2×, 4× audit samples (one process each)."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for factor in (1, 2, 4):
            data = _scaled_data(data_dir, Path(folder) / f"x{factor}", factor, domains)
            done = subprocess.run([sys.executable, "-c", _CHILD, str(model_dir), str(data),
                                   device, str(threads)], capture_output=True, text=True,
                                  check=True, cwd=REPO)
            results[factor] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results[1]
    figures = []
    for factor in (2, 4):
        ratio = results[factor]["seconds"] / base["seconds"]
        memory = results[factor]["peak"] / base["peak"]
        figures.append(Figure(f"scaling {factor}× samples: time ratio",
                              f"{ratio:.2f} ({results[factor]['seconds']:.1f} / "
                              f"{base['seconds']:.1f} s)", f"≤ {factor * 1.1:.1f} (linear)",
                              ratio <= factor * 1.1))
        figures.append(Figure(f"scaling {factor}× samples: peak memory ratio",
                              f"{memory:.2f} ({results[factor]['peak'] / 2**20:.0f} / "
                              f"{base['peak'] / 2**20:.0f} MiB)", "≤ 1.10 (flat)",
                              memory <= 1.10))
    return figures


# --------------------------------------------------------------------------------------------


def render(figures: list[Figure]) -> str:
    rows = [("figure", "measured", "goal", "met?")] + [
        (f.name, f.measured, f.goal, {True: "yes", False: "MISSED", None: "—"}[f.met])
        for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny model, a few minutes on CPU")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--reference", type=Path,
                        help="an already built reference folder (skips the build figure)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: build, "
                        "forward, precision, scan, index, scaling")
    parser.add_argument("--scan-processes", default="1,2",
                        help="process counts of the default-scan figure (default 1,2)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from s2l_scan.devices import resolve_device

    device = resolve_device(args.device)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    preset = "tiny" if args.quick else "default"
    figures: list[Figure] = []

    def section(name: str, run: Callable[[], list[Figure]]) -> None:
        if name in skip:
            return
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        found = run()
        for figure in found:  # as they come, so an interrupted run still shows its figures
            print(f"  {figure.name}: {figure.measured} (goal {figure.goal})", file=sys.stderr,
                  flush=True)
        figures.extend(found)

    with tempfile.TemporaryDirectory() as work:
        reference = args.reference
        if reference is None:
            reference = Path(work) / "reference"
            section("build", lambda: [Figure(
                f"reference build ({preset}, {args.threads} thread)",
                f"{(seconds := build_reference(reference, preset, args.threads)):.0f} s",
                "≤ 180 s", seconds <= 180)])
        model_dir, data_dir = reference / "model", reference / "data"
        section("forward", lambda: forward_efficiency(model_dir, data_dir, device,
                                                      args.threads, 4 if args.quick else 32))
        section("precision", lambda: precision_check(model_dir, data_dir, device, args.threads))
        if not args.quick:
            def scans() -> list[Figure]:
                out = []
                for count in (int(n) for n in args.scan_processes.split(",")):
                    seconds = scan_wall(model_dir, data_dir, device, count,
                                        args.threads if count == 1 else 1, [])
                    label = ("1 process" if count == 1 else
                             f"{count} processes × 1 thread ({count} cores)")
                    out.append(Figure(f"default scan, {label}", f"{seconds:.0f} s", "≤ 180 s",
                                      seconds <= 180))
                return out
            section("scan", scans)
        else:
            section("scan", lambda: [Figure(
                "baseline-only scan (tiny, --quick)", "{:.0f} s".format(scan_wall(
                    model_dir, data_dir, device, 1, args.threads,
                    ["--probes", "", "--extraction-samples", "0"])), "—", None)])
        section("index", lambda: index_throughput(100_000 if args.quick else 1_000_000))
        section("scaling", lambda: scaling(model_dir, data_dir, device, args.threads,
                                           2))
    load = os.getloadavg()
    print(f"\ns2l-scan benchmarks ({'quick' if args.quick else 'full'}; device {device}; "
          f"{args.threads} thread(s); {os.cpu_count()} CPUs; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    print(render(figures))
    if args.json:
        args.json.write_text(json.dumps([f.__dict__ for f in figures], indent=2) + "\n")
    return 0
