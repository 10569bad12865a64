"""Build an audit-data folder from what a releaser has: the fine-tuning set and a held-out set.

``build_audit(members, nonmembers, out, options)`` reads both sources in any convention of
:mod:`s2l_scan.io.sources`, puts each image in a domain (the source's first sub-folder, a
trigger keyword in its caption, or one domain for all), decodes every image by the audit
reader's policy at the scan resolution, and only then checks, before writing anything:

1. **Duplicates across the sets.** A non-member within δ (the pixel RMS distance extraction
   uses, :mod:`s2l_scan.functional.eidetic`, searched with the same exact pixel index,
   :class:`~s2l_scan.extraction.index.KnownImageIndex`) of *any* member image, of any domain,
   is a copy of a training image, not a held-out image: it is dropped and reported ("exact"
   when the files are byte-identical, "near" otherwise). With ``flips`` (on by default; the
   common trainers train on mirrored images) a non-member whose mirror image is within δ of a
   member is one too ("mirrored"), and so is a mirrored duplicate within a set (2.).
2. **Duplicates within each set.** Going through a set in order, an image within δ of one
   already kept is dropped and reported, so no two kept images of a set are near-copies (a
   near-copy pair split over the two cross-fitting halves would tie them together). Dropped
   member copies are still training images: they go to ``known/`` with the surplus members,
   so the extraction index keeps counting them (the k rule counts copies).
3. **Balance.** Per domain, the same number ``n`` of members and non-members is drawn at random
   (seeded; ``n`` = the smaller side, or ``per_domain``). A domain with fewer than
   :data:`~s2l_scan.io.audit_data.MIN_PER_SPLIT` left on a side cannot be cross-fitted and is
   an error naming it.
4. **Distribution shift.** The blind baseline (:func:`s2l_scan.baselines.blind.blind_baseline`,
   the model-free classifier every scan reports) is run on the drawn sets, per domain and
   pooled. A check whose CI lies wholly above 0.5 says the held-out set can be told from the
   members without the model: a *shift*. The CIs are Bonferroni-widened over the checks, so on
   sets drawn alike the chance that any check fires is at most ``shift_alpha`` / 2 (one-sided).
   A shift is a warning; under ``strict`` the build stops and writes nothing.

The folder is written to a hidden temporary sibling of ``out``, checked with the audit
reader's layout rules (:func:`~s2l_scan.io.audit_data.list_domain_files`) and only then renamed
into place; on any error the temporary folder is removed. It holds the layout of
:mod:`s2l_scan.io.audit_data` (``<domain>/prompt.txt``, ``members/``, ``nonmembers/``,
``captions.jsonl``, ``known/``) and ``audit-manifest.json``: every file written with its source
file and sha256, every image left out and why, the duplicate pairs and the shift checks.
Files are copied byte for byte; the sources are only read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2l_scan.config import ScanConfig
from s2l_scan.errors import AuditDataError, UsageError
from s2l_scan.io.audit_data import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MIN_PER_SPLIT,
    RESERVED_DOMAIN_NAMES,
    Pixels,
    list_domain_files,
    load_image,
)
from s2l_scan.io.sources import Source, SourceImage, read_source
from s2l_scan.io.weights import sha256_file

MANIFEST_NAME = "audit-manifest.json"
MANIFEST_FORMAT = "s2l-scan audit build"
MANIFEST_VERSION = 1
DOMAIN_KINDS = ("single", "subfolders", "keywords")
KNOWN_KINDS = ("rest", "none")
TARGET_FPR = 0.01
"""The FPR of the gated TPR (1 %): a note says when the non-members cannot estimate it."""
_MIN_TAIL_DRAWS = 40  # permutations in each tail of the widened blind CI
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildOptions:
    """How ``s2l-scan data build`` turns two sources into an audit folder."""

    resolution: int
    """Image side in pixels at which duplicates and shift are checked: the model's."""
    prompt: str
    """The domain prompt; ``{domain}`` is replaced by each domain's name and ``{concept}`` by
    its sub-folder name without kohya's repeat count, or its keyword."""
    domains: str = "single"
    """single (one domain, ``domain_name``), subfolders (each source's first sub-folder) or
    keywords (the one keyword of ``keywords`` a caption holds)."""
    keywords: tuple[str, ...] = ()
    domain_name: str = "main"
    per_domain: int | None = None
    """At most this many members (and as many non-members) per domain; None: all that pair."""
    seed: int = 0
    delta: float = ScanConfig.extraction_delta
    """Near-duplicate radius: the extraction δ (RMS of [0, 1] pixels)."""
    known: str = "rest"
    """rest: members not drawn (and dropped member copies) go to known/; none: left out."""
    shift_alpha: float = 0.05
    strict: bool = False
    """Stop, writing nothing, when the blind baseline finds a shift."""
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    flips: bool = True
    """The model was trained on horizontally mirrored images too, so a mirrored copy is a copy:
    duplicates are searched flip-aware. On by default because the common trainers mirror by
    default or on one switch (OneTrainer on by default; kohya ``--flip_aug``, diffusers
    ``--random_flip``), and a mirrored duplicate left among the non-members is a member."""

    def __post_init__(self) -> None:
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) \
                or self.resolution < 1:
            raise UsageError(f"resolution must be a positive integer (the model's image size, "
                             f"e.g. 512), got {self.resolution!r}")
        if not self.prompt.strip() or "\n" in self.prompt:
            raise UsageError("the prompt must be one non-empty line, e.g. 'photo of {domain}'")
        if self.domains not in DOMAIN_KINDS:
            raise UsageError(f"domains must be one of {', '.join(DOMAIN_KINDS)}, got "
                             f"{self.domains!r}")
        if self.domains == "single" and "{concept}" in self.prompt:
            # it would become the domain's name ("a photo of main"): a prompt without the
            # trigger word, on which extraction finds nothing and can pass for that reason
            raise UsageError("--prompt uses {concept}, which only --domains subfolders or "
                             "keywords fill; with one domain write the trigger word itself, "
                             "e.g. --prompt 'a photo of sks person'")
        if (self.domains == "keywords") != bool(self.keywords):
            raise UsageError("give --keyword WORD (one per domain) exactly when domains are "
                             "taken from keywords (--domains keywords)")
        if self.per_domain is not None and self.per_domain < MIN_PER_SPLIT:
            raise UsageError(f"per_domain must be >= {MIN_PER_SPLIT}, got {self.per_domain}")
        if not 0.0 < self.delta <= 1.0:
            raise UsageError(f"delta must be in (0, 1], got {self.delta!r}")
        if self.known not in KNOWN_KINDS:
            raise UsageError(f"known must be one of {', '.join(KNOWN_KINDS)}, got {self.known!r}")
        if not 0.0 < self.shift_alpha < 1.0:
            raise UsageError(f"shift_alpha must be in (0, 1), got {self.shift_alpha!r}")


@dataclass(frozen=True)
class Dropped:
    """An image left out of the audit, and why (``copy_of`` for a duplicate)."""

    source: Path
    split: str
    reason: str
    copy_of: Path | None = None
    distance: float | None = None


@dataclass(frozen=True)
class ShiftCheck:
    """The blind baseline on one domain (or ``pooled``): AUC, widened CI, shifted or not."""

    domain: str
    auc: float
    ci: tuple[float, float]
    confidence: float
    n_members: int
    n_nonmembers: int

    @property
    def shifted(self) -> bool:
        """The held-out set is told from the members without the model (CI above 0.5)."""
        return self.ci[0] > 0.5


@dataclass(frozen=True, eq=False)
class _Item:
    domain: str | None  # None: a member in no domain, still a training image
    image: SourceImage
    pixels: Pixels
    sha256: str


@dataclass(frozen=True)
class DomainPlan:
    """One domain as it will be written: prompt, drawn members and non-members, the rest."""

    name: str
    prompt: str
    members: tuple[SourceImage, ...]
    nonmembers: tuple[SourceImage, ...]
    available: dict[str, int]


@dataclass(frozen=True)
class BuildResult:
    """What was (or, under a dry run or a strict failure, would have been) written."""

    out: Path
    written: bool
    sources: dict[str, Source]
    domains: tuple[DomainPlan, ...]
    known: tuple[SourceImage, ...]
    dropped: tuple[Dropped, ...]
    shift: tuple[ShiftCheck, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def shifted(self) -> tuple[ShiftCheck, ...]:
        """The shift checks that fired."""
        return tuple(check for check in self.shift if check.shifted)


def build_audit(members: Path, nonmembers: Path, out: Path, options: BuildOptions, *,
                force: bool = False, dry_run: bool = False,
                progress: Progress | None = None) -> BuildResult:
    """Check and write the audit folder ``out`` (see the module docstring).

    Refuses an existing ``out`` unless it is empty, or ``force`` is given and ``out`` is a
    folder this function wrote (it holds ``audit-manifest.json``); never one that holds or lies
    inside a source. ``dry_run`` checks everything and writes nothing. Raises
    :class:`AuditDataError` for bad sources, :class:`UsageError` for bad options and a domain
    too small to cross-fit; nothing is written then, nor under ``strict`` when a shift is found
    (the result says so: ``written`` is False and ``shifted`` is not empty).
    """
    report = progress or (lambda stage, done, total: None)
    out = Path(out).expanduser().absolute()
    sources = {"members": read_source(members, "--members"),
               "nonmembers": read_source(nonmembers, "--nonmembers")}
    _check_out(out, list(sources.values()), force)
    _check_disjoint(sources)
    assigned = {split: _assign(source, split, options) for split, source in sources.items()}
    dropped = [drop for _, drops in assigned.values() for drop in drops]
    _check_domains_match({split: taken for split, (taken, _) in assigned.items()}, sources)
    # Members in no domain are decoded too: they are training images, so a held-out copy of
    # one is no non-member, and they belong in the extraction index (known/).
    decoded = {split: _decode([(d, i) for d, i in taken if d is not None or split == "members"],
                              options, split, report)
               for split, (taken, _) in assigned.items()}
    member_items, nonmember_items = decoded["members"], decoded["nonmembers"]
    delta, flips = options.delta, options.flips
    members_kept, member_copies = _dedup_within(member_items, "members", delta, flips)
    nonmembers_clean, cross = _dedup_across(nonmember_items, member_items, delta, flips)
    nonmembers_kept, nonmember_copies = _dedup_within(nonmembers_clean, "nonmembers", delta,
                                                      flips)
    dropped += member_copies + cross + nonmember_copies
    drawn, surplus = _draw(members_kept, nonmembers_kept, options,
                           {"members": member_items, "nonmembers": nonmember_items})
    shift = _shift_checks(drawn, options)
    known: tuple[SourceImage, ...] = ()
    if options.known == "rest":
        kept = {id(item) for item in members_kept}
        rest = surplus + [item for item in member_items if id(item) not in kept]
        known = tuple(item.image for item in sorted(rest, key=lambda item: str(item.image.path)))
    plans = tuple(plan for plan, _, _ in drawn)
    result = BuildResult(out=out, written=False, sources=sources, domains=plans, known=known,
                         dropped=tuple(dropped), shift=tuple(shift), notes=tuple(_notes(plans)))
    if dry_run or (options.strict and result.shifted):
        return result
    _write(result, options, force)
    return dataclasses.replace(result, written=True)


# ---------------------------------------------------------------------------------------------
# the output folder


def _check_out(out: Path, sources: Sequence[Source], force: bool) -> None:
    real = out.resolve()
    for source in sources:
        # A folder source may not hold --out (a rerun would read the audit as source data) nor
        # lie in it; a manifest, its folder aside, only its own file and images.
        root = source.root.resolve()
        inside = (real.is_relative_to(root) or root.is_relative_to(real)) if root.is_dir() \
            else any(path.is_relative_to(real) for path in
                     [root, *(image.path.resolve() for image in source.images)])
        if inside:
            raise UsageError(f"--out {out}: overlaps the source {source.root}; the sources "
                             "are never written to. Choose an output folder outside both "
                             "sources.")
    if not out.exists() and not out.is_symlink():
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: its parent folder does not exist; create it first.")
        return
    if out.is_symlink() or not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder; choose a new path.")
    if not any(out.iterdir()):
        return
    if not force:
        raise UsageError(f"--out {out}: exists and is not empty; s2l-scan never overwrites a "
                         "folder. Choose a new path, or pass --force to replace a folder an "
                         "earlier `data build` wrote.")
    foreign = _foreign_files(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise UsageError(f"--out {out}: --force replaces only a folder written by `s2l-scan "
                         f"data build` (its {MANIFEST_NAME} lists every file); this one holds "
                         f"files that build did not write ({shown}). Nothing was deleted; "
                         "choose a new path.")


def _written_files(manifest: Any) -> set[str] | None:
    """The files (relative, POSIX) an earlier build's manifest says it wrote, the manifest
    itself included; None when ``manifest`` is no manifest this tool writes."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("domains"), dict):
        return None
    files = {MANIFEST_NAME}
    try:
        for name, entry in manifest["domains"].items():
            files |= {f"{name}/prompt.txt", f"{name}/captions.jsonl"}
            files |= {f"{name}/{item['file']}" for split in ("members", "nonmembers")
                      for item in entry[split]}
        files |= {item["file"] for item in manifest.get("known") or []}
    except (TypeError, KeyError, AttributeError):
        return None
    return files


def _foreign_files(out: Path) -> list[str]:
    """Files and links under ``out`` that its manifest does not list (all of them when it has
    no manifest this tool wrote): ``--force`` may delete only what a build wrote."""
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    written = _written_files(manifest) or set()
    present = sorted(path.relative_to(out).as_posix() for path in out.rglob("*")
                     if path.is_symlink() or not path.is_dir())
    return [name for name in present if name not in written] or \
        ([] if written else [MANIFEST_NAME])


def _check_disjoint(sources: dict[str, Source]) -> None:
    members = {image.path.resolve(): image for image in sources["members"].images}
    for image in sources["nonmembers"].images:
        if image.path.resolve() in members:
            raise AuditDataError(
                f"{image.path}: is in both --members and --nonmembers (named by "
                f"{members[image.path.resolve()].origin} and {image.origin}). A training image "
                "cannot be held out; give two separate sets.")


# ---------------------------------------------------------------------------------------------
# domains


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_KOHYA_REPEATS = re.compile(r"^\d+_(?=.)")
Assigned = list[tuple[str | None, SourceImage]]  # (domain or None, image)


def domain_folder_name(name: str) -> str:
    """A sub-folder's name as a domain folder name: kohya's repeat prefix (``10_``) dropped,
    runs of other characters than letters, digits, ``.``, ``_``, ``-`` made one ``-``.

    >>> domain_folder_name("10_ohwx man")
    'ohwx-man'
    """
    return _SAFE_NAME.sub("-", _KOHYA_REPEATS.sub("", name)).strip("-.")


def _assign(source: Source, split: str, options: BuildOptions) -> tuple[Assigned, list[Dropped]]:
    """Each image with its domain, or None (and a reason in the dropped list) when it has none.
    """
    if options.domains == "single":
        name = _check_domain_name(options.domain_name, "--domain-name")
        return [(name, image) for image in source.images], []
    if options.domains == "subfolders":
        return _by_subfolder(source), []
    return _by_keyword(source, split, options.keywords)


def _concept(folder: str) -> str:
    """A sub-folder's concept: its name without kohya's repeat count (``10_ohwx man``)."""
    return _KOHYA_REPEATS.sub("", folder)


def _check_domain_name(name: str, where: str) -> str:
    if not name or name != domain_folder_name(name):
        raise UsageError(f"{where}: {name!r} is not usable as a domain folder name; use "
                         "letters, digits, '.', '_' or '-'.")
    if name in RESERVED_DOMAIN_NAMES:
        raise UsageError(f"{where}: the domain name {name!r} is reserved "
                         f"({', '.join(sorted(RESERVED_DOMAIN_NAMES))}); choose another.")
    return name


def _by_subfolder(source: Source) -> Assigned:
    taken: Assigned = []
    folder_of: dict[str, str] = {}
    for image in source.images:
        if len(image.relative.parts) < 2:
            raise AuditDataError(
                f"{image.path}: lies at the top of {source.root}, in no sub-folder, but domains "
                "are taken from sub-folders (--domains subfolders). Move it into its concept's "
                "folder, or use --domains single.")
        folder = image.relative.parts[0]
        name = domain_folder_name(folder)
        if not name or name in RESERVED_DOMAIN_NAMES:
            raise AuditDataError(f"{source.root / folder}: the folder name {folder!r} gives no "
                                 f"usable domain name ({name!r}); rename the folder.")
        if folder_of.setdefault(name, folder) != folder:
            raise AuditDataError(f"{source.root}: the folders {folder_of[name]!r} and {folder!r} "
                                 f"both give the domain {name!r}; rename one.")
        taken.append((name, image))
    return taken


def _by_keyword(source: Source, split: str, keywords: Sequence[str]
                ) -> tuple[Assigned, list[Dropped]]:
    names = {keyword: _check_domain_name(domain_folder_name(keyword), f"--keyword {keyword}")
             for keyword in keywords}
    if len(set(names.values())) != len(names):
        raise UsageError(f"--keyword: {', '.join(keywords)} give clashing domain names "
                         f"{sorted(names.values())}; give distinct keywords.")
    patterns = {keyword: re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)", re.IGNORECASE)
                for keyword in keywords}
    taken: Assigned = []
    dropped: list[Dropped] = []
    for image in source.images:
        found = [k for k, pattern in patterns.items() if pattern.search(image.caption or "")]
        if len(found) == 1:
            taken.append((names[found[0]], image))
        else:
            reason = ("its caption holds no keyword" if not found else
                      f"its caption holds several keywords ({', '.join(found)})")
            taken.append((None, image))
            dropped.append(Dropped(image.path, split, f"in no domain: {reason}"))
    for keyword, name in names.items():
        if not any(domain == name for domain, _ in taken):
            raise AuditDataError(f"{source.root}: no caption holds the keyword {keyword!r} "
                                 f"(domain {name!r}) alone; check the keyword, or caption the "
                                 f"images ({source.convention}: {source.uncaptioned} of "
                                 f"{len(source.images)} images have no caption).")
    return taken, dropped


def _check_domains_match(taken: dict[str, Assigned], sources: dict[str, Source]) -> None:
    found = {split: {domain for domain, _ in pairs if domain is not None}
             for split, pairs in taken.items()}
    for split, other in (("members", "nonmembers"), ("nonmembers", "members")):
        for domain in sorted(found[split] - found[other]):
            raise AuditDataError(
                f"domain {domain!r}: has {split} in {sources[split].root} but no {other} in "
                f"{sources[other].root}. Every domain needs both; add held-out images of it, or "
                "leave its folder out of both sources.")


# ---------------------------------------------------------------------------------------------
# decoding and duplicates


def _decode(taken: Assigned, options: BuildOptions, split: str, report: Progress
            ) -> list[_Item]:
    items = []
    for done, (domain, image) in enumerate(taken):
        pixels = load_image(image.path, options.resolution,
                            max_image_pixels=options.max_image_pixels)
        items.append(_Item(domain, image, pixels, sha256_file(image.path)))
        report(f"reading {split}", done + 1, len(taken))
    return items


def _near(queries: Sequence[_Item], known: Sequence[_Item], delta: float, flips: bool
          ) -> list[tuple[int, int, float, bool]]:
    """Every (query, known, distance, flipped) within δ: the extraction index, pixels embedder
    (exact). With ``flips``, each query is also searched mirrored left–right, and a pair found
    both ways keeps its smaller distance (``flipped`` says which way that was)."""
    from s2l_scan.extraction.index import KnownImageIndex

    index = KnownImageIndex.build((str(i), item.pixels) for i, item in enumerate(known))
    stacked = np.stack([item.pixels for item in queries])
    best: dict[tuple[int, int], tuple[float, bool]] = {}
    for flipped in (False, True) if flips else (False,):
        view = np.ascontiguousarray(stacked[:, :, ::-1]) if flipped else stacked
        for m in index.near(view, delta=delta):
            pair = (m.generated_index, m.known_index)
            best[pair] = min(best.get(pair, (math.inf, False)), (m.distance, flipped))
    return [(i, j, distance, flipped) for (i, j), (distance, flipped) in sorted(best.items())]


def _kind(a: _Item, b: _Item, flipped: bool = False) -> str:
    if flipped:
        return "mirrored copy"
    return "exact copy" if a.sha256 == b.sha256 else "near copy"


def _dedup_within(items: list[_Item], split: str, delta: float, flips: bool = True
                  ) -> tuple[list[_Item], list[Dropped]]:
    """Keep each image unless it lies within δ of one kept before it (or of its mirror image,
    with ``flips``), in source order."""
    if not items:
        return [], []
    earlier: dict[int, list[tuple[float, int, bool]]] = {}
    for i, j, distance, flipped in _near(items, items, delta, flips):
        if j < i:
            earlier.setdefault(i, []).append((distance, j, flipped))
    kept: list[_Item] = []
    kept_at: set[int] = set()
    dropped: list[Dropped] = []
    for i, item in enumerate(items):
        copy_of = next(((d, j, f) for d, j, f in sorted(earlier.get(i, [])) if j in kept_at),
                       None)
        if copy_of is None:
            kept.append(item)
            kept_at.add(i)
            continue
        other = items[copy_of[1]]
        dropped.append(Dropped(item.image.path, split,
                               f"{_kind(item, other, copy_of[2])} of another image of the "
                               "same set",
                               other.image.path, copy_of[0]))
    return kept, dropped


def _dedup_across(nonmembers: list[_Item], members: list[_Item], delta: float,
                  flips: bool = True) -> tuple[list[_Item], list[Dropped]]:
    """Drop every non-member within δ of any member image (of any domain), or of its mirror
    image with ``flips``."""
    if not nonmembers or not members:
        return nonmembers, []
    nearest: dict[int, tuple[float, int, bool]] = {}
    for i, j, distance, flipped in _near(nonmembers, members, delta, flips):
        nearest[i] = min(nearest.get(i, (math.inf, -1, False)), (distance, j, flipped))
    kept, dropped = [], []
    for i, item in enumerate(nonmembers):
        if i not in nearest:
            kept.append(item)
            continue
        distance, j, flipped = nearest[i]
        dropped.append(Dropped(item.image.path, "nonmembers",
                               f"{_kind(item, members[j], flipped)} of a member (a training "
                               "image)",
                               members[j].image.path, distance))
    return kept, dropped


# ---------------------------------------------------------------------------------------------
# balance and shift


_Drawn = tuple[DomainPlan, list[_Item], list[_Item]]


def _draw(members: list[_Item], nonmembers: list[_Item], options: BuildOptions,
          read: dict[str, list[_Item]]) -> tuple[list[_Drawn], list[_Item]]:
    """Per domain, ``n`` members and ``n`` non-members drawn at random (seeded per domain, so
    adding a domain does not change another's draw); the members not drawn come back too."""
    drawn: list[_Drawn] = []
    surplus: list[_Item] = []
    names = {item.domain for item in read["members"] if item.domain is not None}
    for name in sorted(names):
        sides = {"members": [i for i in members if i.domain == name],
                 "nonmembers": [i for i in nonmembers if i.domain == name]}
        available = {f"{split}_read": sum(i.domain == name for i in read[split])
                     for split in sides}
        available |= {f"{split}_unique": len(items) for split, items in sides.items()}
        _check_enough(name, available)
        n = min(len(sides["members"]), len(sides["nonmembers"]))
        n = n if options.per_domain is None else min(n, options.per_domain)
        rng = np.random.default_rng([options.seed, zlib.crc32(name.encode())])
        chosen = {split: sorted(rng.choice(len(items), size=n, replace=False).tolist())
                  for split, items in sides.items()}
        picked = {split: [sides[split][i] for i in chosen[split]] for split in sides}
        surplus += [item for i, item in enumerate(sides["members"])
                    if i not in set(chosen["members"])]
        concept = _concept_of(name, read["members"], options)
        prompt = options.prompt.replace("{domain}", name).replace("{concept}", concept)
        plan = DomainPlan(name, prompt, tuple(i.image for i in picked["members"]),
                          tuple(i.image for i in picked["nonmembers"]), available)
        drawn.append((plan, picked["members"], picked["nonmembers"]))
    surplus += [item for item in members if item.domain is None]
    return drawn, surplus


def _concept_of(name: str, members: list[_Item], options: BuildOptions) -> str:
    """What ``{concept}`` stands for in domain ``name``'s prompt (see BuildOptions.prompt)."""
    if options.domains == "subfolders":
        return next(_concept(item.image.relative.parts[0]) for item in members
                    if item.domain == name)
    if options.domains == "keywords":
        return next(keyword for keyword in options.keywords
                    if domain_folder_name(keyword) == name)
    return name


def _check_enough(name: str, available: dict[str, int]) -> None:
    for split in ("members", "nonmembers"):
        if available[f"{split}_unique"] < MIN_PER_SPLIT:
            raise UsageError(
                f"domain {name!r}: {available[f'{split}_unique']} {split} left (of "
                f"{available[f'{split}_read']} read, after dropping duplicates); it needs at "
                f"least {MIN_PER_SPLIT}: every figure is cross-fitted, chosen on one half and "
                "measured on the other, so each half needs one. Add images to it, or merge it "
                "with another domain.")


def _shift_checks(drawn: list[_Drawn], options: BuildOptions) -> list[ShiftCheck]:
    """The blind baseline per domain and, with several, pooled; Bonferroni-widened CIs."""
    from s2l_scan.baselines.blind import blind_baseline

    groups = [(plan.name, members, nonmembers) for plan, members, nonmembers in drawn]
    if len(groups) > 1:
        groups.append(("pooled", [i for _, m, _ in groups for i in m],
                       [i for _, _, n in groups for i in n]))
    confidence = 1.0 - options.shift_alpha / len(groups)
    resamples = max(1000, math.ceil(_MIN_TAIL_DRAWS / ((1.0 - confidence) / 2.0)))
    checks = []
    prompts = {plan.name: plan.prompt for plan, _, _ in drawn}
    for name, members, nonmembers in groups:
        def captions(items: list[_Item]) -> list[str]:
            return [item.image.caption or prompts[str(item.domain)] for item in items]

        result = blind_baseline(np.stack([i.pixels for i in members]),
                                np.stack([i.pixels for i in nonmembers]),
                                member_captions=captions(members),
                                nonmember_captions=captions(nonmembers), seed=options.seed,
                                n_resamples=resamples, confidence=confidence)
        checks.append(ShiftCheck(name, result.auc, result.ci, confidence, len(members),
                                 len(nonmembers)))
    return checks


def _notes(plans: Sequence[DomainPlan]) -> list[str]:
    from s2l_scan.functional.metrics import estimable_fpr

    notes = []
    for plan in plans:
        n = len(plan.nonmembers)
        if not estimable_fpr(TARGET_FPR, n // 2, n - n // 2):
            need = 2 * math.ceil(1 / TARGET_FPR)
            notes.append(f"domain {plan.name!r}: {n} non-members; TPR at {TARGET_FPR:.0%} FPR "
                         f"needs >= {need} ({need // 2} per cross-fitting half), so the scan "
                         "reports AUC and a TPR at a higher FPR only.")
    return notes


# ---------------------------------------------------------------------------------------------
# writing


def _write(result: BuildResult, options: BuildOptions, force: bool) -> None:
    out = result.out
    temp = out.parent / f".{out.name}.building-{uuid.uuid4().hex[:8]}"
    try:
        temp.mkdir()
        manifest = _write_tree(temp, result, options)
        (temp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n",
                                          encoding="utf-8")
        list_domain_files(temp)  # the audit reader accepts the layout and every caption
        _swap_in(temp, out, force)
    except OSError as exc:
        raise AuditDataError(f"--out {out}: cannot write the audit folder ({exc}); nothing was "
                             "written.") from exc
    finally:
        if temp.exists():
            shutil.rmtree(temp)


def _swap_in(temp: Path, out: Path, force: bool) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(temp, out)
        return
    assert force and not _foreign_files(out)  # checked by _check_out
    old = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    os.rename(temp, out)
    shutil.rmtree(old)


def _write_tree(root: Path, result: BuildResult, options: BuildOptions) -> dict[str, Any]:
    domains: dict[str, Any] = {}
    for plan in result.domains:
        folder = root / plan.name
        entry: dict[str, Any] = {"prompt": plan.prompt, "available": plan.available}
        lines = []
        for split, images in (("members", plan.members), ("nonmembers", plan.nonmembers)):
            entry[split] = []
            for number, image in enumerate(images):
                relative = f"{split}/{_file_name(number, image)}"
                _copy(image.path, folder / relative)
                entry[split].append({"file": relative, "source": str(image.path),
                                     "named_by": image.origin,
                                     "sha256": sha256_file(folder / relative),
                                     "caption": image.caption})
                if image.caption is not None:
                    lines.append(json.dumps({"file": relative, "caption": image.caption},
                                            ensure_ascii=False))
        (folder / "prompt.txt").write_text(plan.prompt + "\n", encoding="utf-8")
        if lines:
            (folder / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        domains[plan.name] = entry
    known = []
    for number, image in enumerate(result.known):
        relative = f"known/{_file_name(number, image)}"
        _copy(image.path, root / relative)
        known.append({"file": relative, "source": str(image.path)})
    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "options": {key: list(value) if isinstance(value, tuple) else value
                    for key, value in dataclasses.asdict(options).items()},
        "sources": {split: {"path": str(source.root), "convention": source.convention,
                            "images": len(source.images), "uncaptioned": source.uncaptioned}
                    for split, source in result.sources.items()},
        "domains": domains, "known": known,
        "dropped": [{"source": str(d.source), "split": d.split, "reason": d.reason,
                     "copy_of": None if d.copy_of is None else str(d.copy_of),
                     "distance": d.distance} for d in result.dropped],
        "shift": [{"domain": c.domain, "blind_auc": c.auc, "ci": list(c.ci),
                   "confidence": c.confidence, "shifted": c.shifted,
                   "n_members": c.n_members, "n_nonmembers": c.n_nonmembers}
                  for c in result.shift],
        "notes": list(result.notes),
    }


def _file_name(number: int, image: SourceImage) -> str:
    stem = _SAFE_NAME.sub("-", image.path.stem).strip("-.")[:60] or "image"
    return f"{number:05d}-{stem}{image.path.suffix.lower()}"


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


# ---------------------------------------------------------------------------------------------
# the summary printed by the CLI


SHIFT_WARNING = (
    "the blind baseline (a classifier that never sees the model) tells these members from "
    "these non-members, so an attack's AUC on them would measure how the two sets differ, not "
    "what the model memorised. Draw the held-out set like the training set: same source, "
    "collection, processing and captioning (docs/audit-data.md).")


def render_build(result: BuildResult, *, shown: int = 10) -> str:
    """Plain-text summary: sources, domains, duplicates dropped, shift checks, notes."""
    lines = []
    for split, source in result.sources.items():
        lines.append(f"{split}: {len(source.images)} images from {source.root} "
                     f"({source.convention}; {source.uncaptioned} without caption)")
    for plan in result.domains:
        a = plan.available
        lines.append(f"domain {plan.name}: {len(plan.members)} members + "
                     f"{len(plan.nonmembers)} non-members (read {a['members_read']} / "
                     f"{a['nonmembers_read']}, after duplicates {a['members_unique']} / "
                     f"{a['nonmembers_unique']}); prompt {plan.prompt!r}")
    if result.known:
        lines.append(f"known/: {len(result.known)} other training images for the extraction "
                     "index")
    copies = [d for d in result.dropped if d.copy_of is not None]
    other = [d for d in result.dropped if d.copy_of is None]
    if copies:
        lines.append(f"dropped {len(copies)} duplicate(s) (RMS distance <= δ):")
        lines += [f"  {d.split[:-1]} {d.source}: {d.reason} {d.copy_of} (distance "
                  f"{d.distance:.4f})" for d in copies[:shown]]
        if len(copies) > shown:
            lines.append(f"  ... and {len(copies) - shown} more (audit-manifest.json)")
    if other:
        lines.append(f"left out {len(other)} image(s) without a domain, e.g. {other[0].source}: "
                     f"{other[0].reason}")
    for check in result.shift:
        flag = "SHIFTED" if check.shifted else "ok"
        lines.append(f"shift check {check.domain}: blind AUC {check.auc:.3f} "
                     f"[{check.ci[0]:.3f}, {check.ci[1]:.3f}] ({check.confidence:.1%} CI) "
                     f"{flag}")
    for check in result.shifted:
        lines.append(f"warning: held-out set of {check.domain} is shifted: {SHIFT_WARNING}")
    lines += [f"note: {note}" for note in result.notes]
    if result.written:
        lines.append(f"wrote {result.out} ({MANIFEST_NAME} lists every file and its source)")
    else:
        lines.append(f"nothing written to {result.out}")
    return "\n".join(lines) + "\n"
