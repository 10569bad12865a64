"""Study: extraction cost per 1,000 generated images — generation, index, verification.

Measures on one model and audit set (default: the cached default reference model):

1. generation time per image (DDIM, ``--steps`` steps, guidance ``--guidance``, batch
   ``--batch-size``, ``--threads`` torch threads) over ``--generate`` images of the first
   domain's prompt, extrapolated linearly to 1,000 images (labelled as such);
2. for each known set — the audit data's (``members`` + ``known/``) and synthetic sets of
   ``--synthetic`` sizes and ``--synthetic-kind`` kinds (see :func:`_synthetic`; the real
   known images are always included) — the index build time (cold, including the cache
   key and the atomic save), the reuse time (a second lookup: key, load, checksum and pixel
   checks), and the retrieval + exact-verification time for 1,000 queries (the generated images
   repeated to 1,000, so the per-query work is that of real generations).

    python studies/extraction_throughput.py [MODEL_DIR DATA_DIR] [--generate 64]
        [--synthetic 10000,100000] [--embedder pixels] [--json OUT]

Timings depend on the machine and its load; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2l_scan.extraction.cache import cached_index
from s2l_scan.extraction.embedders import make_embedder
from s2l_scan.generation import SamplerSettings, generate_images
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.probes.extraction import known_images
from s2l_scan.reference.cache import cache_key, cache_root
from s2l_scan.reference.presets import get_preset

QUERIES = 1000


def _parse() -> argparse.Namespace:
    default = cache_root() / "reference" / cache_key(get_preset("default"), 0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=default / "model")
    parser.add_argument("data", type=Path, nargs="?", default=default / "data")
    parser.add_argument("--generate", type=int, default=64, help="images actually generated")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--synthetic", default="10000,100000",
                        help="comma-separated sizes of synthetic known sets ('' for none)")
    parser.add_argument("--synthetic-kind", default="smooth,jitter",
                        help="comma-separated kinds of synthetic known images: smooth, jitter")
    parser.add_argument("--embedder", default="pixels", help="pixels or open_clip:ARCH:PATH")
    parser.add_argument("--allow-pickle", action="store_true")
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    unknown = set(args.synthetic_kind.split(",")) - {"smooth", "jitter", ""}
    if unknown:
        parser.error(f"--synthetic-kind: unknown kind(s) {sorted(unknown)}; use smooth, jitter")
    return args


def _time(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _generate(args: argparse.Namespace) -> tuple[np.ndarray, dict[str, Any]]:
    model = load_pipeline(args.model)
    data = load_audit_data(args.data, model.resolution)
    domain = data.domains[0]
    settings = SamplerSettings(steps=args.steps, guidance=args.guidance,
                               batch_size=args.batch_size)
    generate_images(model.pipeline, domain.prompt, 1, seed=99, key="warm-up",
                    settings=SamplerSettings(steps=2, guidance=args.guidance, batch_size=1))
    images, seconds = _time(lambda: generate_images(
        model.pipeline, domain.prompt, args.generate, seed=0, key=domain.name,
        settings=settings))
    per_image = seconds / args.generate
    return images, {"domain": domain.name, "images_generated": args.generate,
                    "seconds": round(seconds, 2), "seconds_per_image": round(per_image, 4),
                    "extrapolated_seconds_per_1000": round(per_image * 1000, 1),
                    "resolution": model.resolution, "data": data}


def _synthetic(real: list[tuple[str, np.ndarray]], size: int, kind: str,
               ) -> list[tuple[str, np.ndarray]]:
    """The real known images plus ``size - len(real)`` synthetic ones of ``kind``.

    ``smooth``: random 4×4 colour grids upsampled bilinearly, plus ±8 noise — image-like
    spatial statistics, spread out in pooled space (the common case: few candidates).
    ``jitter``: real known images with a brightness shift and ±24 noise — hundreds of
    near-copies of each real image (the hard case for retrieval and the k rule).
    Uniform noise is avoided on purpose: pooling averages it to mid-grey, so all noise images
    lie within ~0.1 of each other in pooled space, which no real data set does.
    """
    rng = np.random.default_rng(size)
    height, width, channels = real[0][1].shape
    extra = max(0, size - len(real))
    out = np.empty((extra, height, width, channels), np.uint8)
    base = np.stack([pixels for _, pixels in real])
    for start in range(0, extra, 8192):
        n = min(8192, extra - start)
        if kind == "smooth":
            grid = torch.from_numpy(rng.uniform(0, 255, (n, channels, 4, 4)).astype(np.float32))
            image = torch.nn.functional.interpolate(grid, size=(height, width),
                                                    mode="bilinear", align_corners=False)
            pixels = image.permute(0, 2, 3, 1).numpy() + rng.integers(-8, 9, (n, height, width,
                                                                              channels))
        else:
            pixels = (base[rng.integers(0, len(base), n)].astype(np.int16)
                      + rng.integers(-16, 17, (n, 1, 1, 1))
                      + rng.integers(-24, 25, (n, height, width, channels)))
        out[start:start + n] = np.clip(np.rint(pixels), 0, 255)
    return real + [(f"synthetic-{kind}/{i:07d}.png", out[i]) for i in range(extra)]


def _measure_index(name: str, images: list[tuple[str, np.ndarray]], queries: np.ndarray,
                   args: argparse.Namespace) -> dict[str, Any]:
    embedder = make_embedder(args.embedder, allow_pickle=args.allow_pickle)
    with tempfile.TemporaryDirectory(prefix="s2l-throughput-") as root:
        (index, status), build = _time(lambda: cached_index(images, embedder, root=Path(root)))
        (again, status_again), reuse = _time(
            lambda: cached_index(images, embedder, root=Path(root)))
    assert (status, status_again) == ("built", "reused")
    matches, search = _time(lambda: again.matches(queries, k=args.k, delta=args.delta,
                                                  candidates=args.candidates))
    return {"known_set": name, "n_known": len(images), "index_kind": index.kind,
            "embedder": embedder.spec, "build_seconds": round(build, 3),
            "reuse_seconds": round(reuse, 3), "queries": len(queries),
            "search_and_verify_seconds_per_1000": round(search * 1000 / len(queries), 3),
            "matches": len(matches)}


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    generated, generation = _generate(args)
    data = generation.pop("data")
    queries = np.resize(generated, (QUERIES, *generated.shape[1:]))
    real = known_images(data, "members")
    rows = [_measure_index("audit data (members + known/)", real, queries, args)]
    for kind in [part.strip() for part in args.synthetic_kind.split(",") if part.strip()]:
        for size in [int(part) for part in args.synthetic.split(",") if part.strip()]:
            rows.append(_measure_index(f"synthetic {kind} {size:,}",
                                       _synthetic(real, size, kind), queries, args))
    result = {"model": str(args.model), "threads": args.threads, "steps": args.steps,
              "guidance": args.guidance, "batch_size": args.batch_size,
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "cpu_count": os.cpu_count(), "generation": generation, "index": rows}
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _print(result: dict[str, Any]) -> None:
    gen = result["generation"]
    print(f"model {result['model']} ({gen['resolution']}px), {result['threads']} thread(s), "
          f"load average {result['load_average']} on {result['cpu_count']} CPUs")
    print(f"generation: {gen['images_generated']} images in {gen['seconds']} s "
          f"(DDIM {result['steps']} steps, guidance {result['guidance']}, batch "
          f"{result['batch_size']}) = {gen['seconds_per_image']} s/image; "
          f"EXTRAPOLATED to 1,000 images: {gen['extrapolated_seconds_per_1000']} s")
    print(f"{'known set':34} {'n_known':>8} {'kind':>5} {'build s':>8} {'reuse s':>8} "
          f"{'search+verify s / 1,000 gen':>28} {'matches':>8}")
    for row in result["index"]:
        print(f"{row['known_set']:34} {row['n_known']:>8} {row['index_kind']:>5} "
              f"{row['build_seconds']:>8} {row['reuse_seconds']:>8} "
              f"{row['search_and_verify_seconds_per_1000']:>28} {row['matches']:>8}")


if __name__ == "__main__":
    main()
