"""Extraction probe (README, probes): generate from the domain prompt, look for training images.

For each domain, M images are generated (seeded, batched) from the domain prompt by the model
under scan — the released checkpoint, or an S2L probe's shaken copy — and searched in a FAISS
index of known images (``known_images``: by default every member of every scanned domain plus
``known/``; ``nonmembers`` gives the control index without any training image).

What counts (Carlini et al. 2023; :mod:`s2l_scan.functional.eidetic`): the known **training**
images stand in for the training set. Those are the audit data's ``<domain>/members/`` and
``known/`` images; ``<domain>/nonmembers/`` images are held out, never training. A folder given
as ``known_images = DIR``, or a prebuilt ``known_index``, carries no membership: every image in
it is taken as a training image, and the record says so (``settings["training_set"]``). A
training image is **extracted** when some generation lies within δ (RMS of [0, 1] pixels) of
it and at most k training images, itself included, lie within δ of it ((k, ℓ2, δ)-eidetic). A
record counts apart ``extracted`` (distinct training images extracted: what the gate compares),
``matched_generations`` (generations that extracted one) and ``nonmember_matches``
(generations within δ of a non-member: never extraction, a false-positive indicator of the
criterion). Each match of a training image is saved as a side-by-side PNG: generated | known |
|difference| (×4, so faint differences show).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from s2l_scan.config import check_known_images
from s2l_scan.errors import UsageError
from s2l_scan.extraction.index import DEFAULT_CANDIDATES, KnownImageIndex
from s2l_scan.functional.views import (
    DEFAULT_FAMILIES,
    View,
    clopper_upper,
    overlap_lower_bound,
    overlap_rms,
    pooled,
    views,
    whole_view,
)
from s2l_scan.generation import SamplerSettings, generate_images
from s2l_scan.io.audit_data import KNOWN_FOLDER, image_folder, load_image
from s2l_scan.report.model import ExtractionRecord


@dataclass(frozen=True)
class ExtractionSettings:
    """What the probe generates and what counts as a match."""

    samples: int = 32
    k: int = 10
    delta: float = 0.1
    tiled: bool = False
    candidates: int = DEFAULT_CANDIDATES
    known_images: str = "members"
    known_index: str | None = None  # a sharded index folder, searched instead of known_images
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    scheduler: str | None = None  # the scheduler class the sampler ran, for the report
    invariances: tuple[str, ...] = DEFAULT_FAMILIES
    """View families (:data:`s2l_scan.functional.views.FAMILIES`) a copy is searched under."""


Pairs = list[tuple[str, np.ndarray]]
_Found = list[tuple[int, int, float]]  # (generation, known index, distance)


def _data_id(data: Any, path: Path) -> str:
    """Ids relative to the audit data keep reports identical across machines."""
    return str(path.relative_to(data.root)) if path.is_relative_to(data.root) else str(path)


def _members(data: Any) -> Pairs:
    return [(_data_id(data, path), pixels) for path, pixels in data.index_images()]


def _nonmembers(data: Any) -> Pairs:
    return [(_data_id(data, image.path), image.pixels)
            for domain in data.domains for image in domain.nonmembers]


def _everything(data: Any) -> Pairs:
    members = [(_data_id(data, image.path), image.pixels)
               for domain in data.domains for image in domain.members]
    known = [(_data_id(data, path), pixels) for path, pixels in data.known_images()]
    return members + _nonmembers(data) + known


# What ``known_images`` can name besides a folder. ``nonmembers`` is the control: an index
# without any training image, so every match it yields is a false positive of the criterion.
KNOWN_IMAGE_SETS: dict[str, tuple[str, Callable[[Any], Pairs]]] = {  # keys: config's names
    "members": ("every member of the scanned domains, plus DIR/known/", _members),
    "nonmembers": ("only the held-out non-members (a control: no training image)", _nonmembers),
    "all": ("members, non-members and DIR/known/", _everything),
}


# What stands in for the training set, per known_images (an audit set) or for a folder/index.
TRAINING_SET = {
    "members": "the known member images (<domain>/members/ and known/) stand in for the "
               "training set",
    "nonmembers": "the index holds only held-out non-members: no training image, so nothing "
                  "can be extracted; every match is a non-member match",
    "all": "the known member images (<domain>/members/ and known/) stand in for the training "
           "set; held-out non-members in the index are never extracted",
}
UNLABELLED_TRAINING_SET = ("every image of the known set is taken as a training image (its "
                           "membership is not recorded)")


def is_nonmember_id(known_id: str) -> bool:
    """Whether an audit-data id (``<domain>/<split>/...``, relative to the audit folder, as
    :func:`known_images` names them) is a held-out non-member."""
    parts = Path(known_id).parts
    return len(parts) > 2 and parts[0] != KNOWN_FOLDER and parts[1] == "nonmembers"


def training_mask(ids: Sequence[str], settings: ExtractionSettings) -> np.ndarray | None:
    """Which known images are training images: None (every one) for a folder or a prebuilt
    index, which carry no membership; otherwise all but the audit data's non-members."""
    if settings.known_index is not None or settings.known_images not in KNOWN_IMAGE_SETS:
        return None
    return np.array([not is_nonmember_id(known_id) for known_id in ids], dtype=bool)


def training_set(settings: ExtractionSettings) -> str:
    """One sentence for the report: what stood in for the training set."""
    if settings.known_index is not None or settings.known_images not in KNOWN_IMAGE_SETS:
        return UNLABELLED_TRAINING_SET
    return TRAINING_SET[settings.known_images]


def known_images(data: Any, which: str) -> Pairs:
    """The (id, pixels) pairs the index holds for ``known_images = which``."""
    check_known_images(which)
    if which in KNOWN_IMAGE_SETS:
        pairs = KNOWN_IMAGE_SETS[which][1](data)
    else:
        folder = Path(which).expanduser()
        files = image_folder(folder)
        pairs = [(str(Path(which) / path.relative_to(folder)),
                  load_image(path, data.resolution, max_image_pixels=data.max_image_pixels))
                 for path in files]
    if not pairs:
        raise UsageError(f"known_images {which!r} holds no image (.png, .jpg, .jpeg); the "
                         f"extraction index needs at least one")
    return pairs


def build_known_index(data: Any, which: str = "members", *, embedder: Any = None,
                      cache: Path | None = None) -> KnownImageIndex:
    """The index of ``known_images(data, which)``; with ``cache``, reused across runs.

    ``embedder`` defaults to pooled pixels (exact retrieval).
    """
    from s2l_scan.extraction.embedders import PixelEmbedder

    images = known_images(data, which)
    embedder = PixelEmbedder() if embedder is None else embedder
    if cache is None:
        return KnownImageIndex.build(images, embedder=embedder)
    from s2l_scan.extraction.cache import cached_index

    return cached_index(images, embedder, root=cache)[0]


def evidence_png(generated: np.ndarray, known: np.ndarray, path: Path) -> Path:
    """Save generated | known | |difference|×4 side by side, each scaled up for viewing."""
    diff = np.clip(np.abs(generated.astype(np.int16) - known.astype(np.int16)) * 4, 0, 255)
    strip = np.concatenate([generated, known, diff.astype(np.uint8)], axis=1)
    scale = max(1, 128 // generated.shape[0])
    image = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale),
                                          Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def run_extraction(pipeline: Any, domains: list[Any], index: KnownImageIndex,
                   settings: ExtractionSettings, *, seed: int, probe: str | None,
                   evidence_dir: Path | None,
                   prompt_fn: Callable[[str], str] | None = None,
                   generate: Callable[[str, str], np.ndarray] | None = None
                   ) -> list[ExtractionRecord]:
    """One record per domain: generated count, matches with distances, evidence paths (not
    judged: :func:`s2l_scan.gate.judge_extraction` decides).

    ``prompt_fn`` rewrites the domain prompt for a probe's copy (textual inversion adds its
    learned tokens, as the attacker would when sampling). ``generate(prompt, key)`` replaces
    sampling from ``pipeline`` (the session passes one that reads and fills its unit store);
    it must return what :func:`generate_images` would.
    """
    def sample(prompt: str, key: str) -> np.ndarray:
        return generate_images(pipeline, prompt, settings.samples, seed=seed, key=key,
                               settings=settings.sampler)

    from s2l_scan.progress import report

    training = training_mask(index.ids, settings)
    records: list[ExtractionRecord] = []
    stage = search_stage(probe)
    report(stage, 0, len(domains))
    for domain in domains:
        prompt = domain.prompt if prompt_fn is None else prompt_fn(domain.prompt)
        generated = (sample if generate is None else generate)(prompt, domain.name)
        search = _ViewSearch(index, settings, training)
        matches, near_nonmembers, plain_nonmembers = search.run(generated)
        found = []
        for g, j, distance, view in matches:
            known_id = index.ids[j]
            entry: dict[str, Any] = {"generated_index": g, "known": known_id,
                                     "distance": round(distance, 6),
                                     **({} if view.name == "identity" else {"view": view.name})}
            if evidence_dir is not None:
                tag = hashlib.sha256(known_id.encode()).hexdigest()[:8]
                name = f"{probe or 'released'}-{domain.name}-{g:04d}-{tag}.png"
                entry["evidence"] = str(evidence_png(*_as_seen(generated[g], index.pixels[j],
                                                               view), evidence_dir / name))
            found.append(entry)
        nearest = _nearest(index, generated)
        matched = len({m["generated_index"] for m in found})
        records.append(ExtractionRecord(
            probe=probe, domain=domain.name, n_generated=settings.samples,
            extracted=len({m["known"] for m in found}),
            matched_generations=matched,
            nonmember_matches=len(near_nonmembers), matches=found,
            nearest_distance=nearest,
            settings={"k": settings.k, "delta": settings.delta, "tiled": settings.tiled,
                         **search.describe(len(plain_nonmembers)),
                         "copy_rate_upper_95": round(clopper_upper(
                             matched, max(1, settings.samples)), 6),
                         "sampler": settings.sampler.sampler,
                         **({} if settings.scheduler is None
                            else {"scheduler": settings.scheduler}),
                         "steps": settings.sampler.steps,
                         "guidance": settings.sampler.guidance,
                         **({"known_images": settings.known_images}
                            if settings.known_index is None
                            else {"known_index": settings.known_index}),
                         "n_known": len(index),
                         "training_set": training_set(settings),
                         "embedder": index.embedder.spec,
                         # False: retrieval was k-NN, so a true match could have been missed
                         "exact_retrieval": index.exact,
                         **({} if index.exact else {"candidates": settings.candidates})},
        ))
        report(stage, len(records), len(domains))
    return records


class _ViewSearch:
    """One domain's search of its generations under every view of ``settings.invariances``
    (:mod:`s2l_scan.functional.views`): whole views through the index (its exact retrieval
    and k rule); shifts by brute force over the known pixels, screened by an exact lower bound
    on pooled pixels, for indexes of at most 50,000 images and the plain RMS only (the tiled
    ℓ2 of a part of an image is not defined; the record says when shifts were left out)."""

    def __init__(self, index: KnownImageIndex, settings: ExtractionSettings,
                 training: np.ndarray | None) -> None:
        self.index, self.settings, self.training = index, settings, training
        every = views(settings.invariances, index.resolution[0])
        self.skipped = (None if not any(v.shifted for v in every) else
                        "the tiled distance" if settings.tiled else
                        f"an index of over {_NEAREST_LIMIT} images"
                        if len(index) > _NEAREST_LIMIT else None)
        self.views = tuple(v for v in every if not (v.shifted and self.skipped))
        self.factor = max(1, index.resolution[0] // 32)
        self._blocks: np.ndarray | None = None

    def describe(self, plain_nonmembers: int) -> dict[str, Any]:
        """What the record's settings say of the search."""
        return {"invariances": list(self.settings.invariances), "views": len(self.views),
                **({} if self.skipped is None else {"shifts_left_out": self.skipped}),
                "nonmember_matches_plain": plain_nonmembers}

    def run(self, generated: np.ndarray) -> tuple[list[tuple[int, int, float, View]], set[int],
                                                   set[int]]:
        """Eidetic matches (generation, known index, distance, closest view), each pair once
        and sorted like :meth:`KnownImageIndex.matches`; the generations near a non-member
        under any view; those near one as generated."""
        best: dict[tuple[int, int], tuple[float, int]] = {}
        nonmembers: dict[int, set[int]] = {}
        for number, view in enumerate(self.views):
            eidetic, near = (self._shifted(generated, view) if view.shifted
                             else self._whole(generated, view))
            for g, j, distance in eidetic:
                best[g, j] = min(best.get((g, j), (np.inf, 0)), (distance, number))
            nonmembers[number] = near
        matches = sorted(((g, j, d, self.views[v]) for (g, j), (d, v) in best.items()),
                         key=lambda m: (m[0], m[2], m[1]))
        return matches, set().union(*nonmembers.values()), nonmembers.get(0, set())

    def _whole(self, generated: np.ndarray, view: View) -> tuple[_Found, set[int]]:
        s, training = self.settings, self.training
        seen = whole_view(generated, view)
        found = [(m.generated_index, m.known_index, m.distance) for m in self.index.matches(
            seen, k=s.k, delta=s.delta, tiled=s.tiled, candidates=s.candidates,
            training=training)]
        if training is None or training.all():  # only an index holding non-members can
            return found, set()  # have them near a generation
        near = {m.generated_index for m in self.index.near(
            seen, delta=s.delta, tiled=s.tiled, candidates=s.candidates)
            if not training[m.known_index]}
        return found, near

    def _shifted(self, generated: np.ndarray, view: View) -> tuple[_Found, set[int]]:
        if self._blocks is None:  # in chunks: a sharded index keeps its pixels on disk
            total = len(self.index)
            self._blocks = np.concatenate([pooled(self.index.pixels[np.arange(
                start, min(start + 256, total))], self.factor) for start in range(0, total, 256)])
        gen = generated[:, :, ::-1] if view.flip else generated
        bound = overlap_lower_bound(gen, self._blocks, view.dy, view.dx, self.factor)
        pixels, delta = self.index.pixels, self.settings.delta
        within = [(int(g), int(j), float(overlap_rms(gen[g:g + 1], pixels[[int(j)]], view.dy,
                                                     view.dx)[0, 0]))
                  for g, j in zip(*np.nonzero(bound <= delta + 1e-9), strict=True)]
        within = [(g, j, d) for g, j, d in within if d <= delta]
        training = self.training
        members = [(g, j, d) for g, j, d in within if training is None or training[j]]
        copies = self.index.copy_counts({j for _, j, _ in members}, delta=delta,
                                        training=training)
        return ([(g, j, d) for g, j, d in members if copies[j] <= self.settings.k],
                {g for g, j, _ in within if training is not None and not training[j]})


def _as_seen(generated: np.ndarray, known: np.ndarray, view: View
             ) -> tuple[np.ndarray, np.ndarray]:
    """The pair an evidence picture shows: the generation under the view (uint8) and the known
    image, moved as the view moves it (so their difference is the matched one)."""
    if view.shifted:
        seen = generated[:, ::-1] if view.flip else generated
        return np.ascontiguousarray(seen), np.roll(known, (view.dy, view.dx), axis=(0, 1))
    seen = whole_view(generated[None], view)[0]
    if seen.dtype != np.uint8:
        seen = np.rint(np.clip(seen, 0, 1) * 255).astype(np.uint8)
    return seen, known


def search_stage(probe: str | None) -> str:
    """The progress stage of the search of one model's generations among the known images."""
    return f"searching generations among known images ({probe or 'released'}; domains)"


_NEAREST_LIMIT = 50_000


def _nearest(index: KnownImageIndex, generated: np.ndarray) -> float | None:
    """Smallest RMS from any generation to any known image: how close the model came.

    Brute force, so only for indexes of at most 50,000 images (None beyond).
    """
    from s2l_scan.functional.eidetic import rms_distance

    if len(index) > _NEAREST_LIMIT:
        return None
    return round(float(rms_distance(generated, index.pixels).min()), 6)
