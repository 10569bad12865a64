"""Load and check the audit-data folder (README, audit data).

Layout::

    DIR/<domain>/prompt.txt              the domain prompt, one non-empty line
    DIR/<domain>/members/*.png|jpg|jpeg|webp  images known to be in the training set
    DIR/<domain>/nonmembers/*.png|...    held-out images of the same distribution
    DIR/<domain>/captions.jsonl          optional {"file": ..., "caption": ...} per line
    DIR/known/...                        optional extra images for the extraction index

Every non-hidden sub-folder of ``DIR`` other than ``known`` is a domain. Domains are sorted by
name and images by file name, so two loads of the same folder give the same order. Files whose
name starts with ``.`` (``.DS_Store``, macOS ``._x.png`` resource forks) and files with other
extensions are ignored; a ``members/`` or ``nonmembers/`` folder left with no image is an error.
Member and non-member images are decoded when the folder is loaded (a broken file fails the
scan before any compute is spent), costing ``resolution² × 3`` bytes each. ``known/`` may hold
millions of files, so its images are only listed at load time and decoded while iterating.

Image policy, applied to every image (see :func:`prepare_image`):

* Only PNG and JPEG decoders are used, whatever the extension says; anything else, a truncated
  file or an image over ``max_image_pixels`` is an :class:`~s2l_scan.errors.AuditDataError`.
* EXIF orientation is applied first, so pixels are what an image viewer shows.
* 16-bit grayscale (Pillow modes ``I;16*`` and ``I``) is scaled from 0…65535 to 0…255 with
  rounding, not clipped. 16-bit colour PNGs are reduced to 8 bits by Pillow itself.
* Images with transparency (RGBA, LA, PA, palette or grayscale with a transparent colour) are
  composited on white, as img2dataset does for LAION, the data Stable Diffusion was trained
  on; everything else is converted to RGB (grayscale is copied to the three channels).
* Non-square images are center-cropped to a square (the smaller side), then resized to
  ``resolution × resolution`` with bicubic filtering; an image already at that size is left
  untouched, so exact pixels survive. Mixed sizes in one folder are therefore fine.

Symlinks are followed only while they stay inside ``DIR``; one that resolves outside it is an
error. The loader only reads: it never creates, modifies or deletes anything under ``DIR``.
"""

from __future__ import annotations

import errno
import json
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from s2l_scan.errors import AuditDataError, NothingToScanError, UsageError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # decoded by Pillow's own decoders only
IMAGE_SUFFIXES = frozenset(_IMAGE_SUFFIXES)
IMAGE_KINDS = "/".join(_IMAGE_SUFFIXES)
"""The accepted image files, for messages: ".png/.jpg/.jpeg/.webp"."""
KNOWN_FOLDER = "known"
SPLITS = ("members", "nonmembers")
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# Report rows use "pooled" for the all-domains aggregate (docs/architecture.md); a domain of
# that name would be indistinguishable from it.
RESERVED_DOMAIN_NAMES = frozenset({KNOWN_FOLDER, "pooled"})

_PILLOW_FORMATS = ("PNG", "JPEG", "WEBP")
_TRANSPARENT_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_WHITE = (255, 255, 255, 255)
# Everything Pillow's PNG and JPEG decoders raise for a bad file (UnidentifiedImageError is an
# OSError); our own code runs outside the guarded block so its bugs are not reported as bad data.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error,
    Image.DecompressionBombError, Image.DecompressionBombWarning,
)
_PIXEL_LIMIT_LOCK = threading.Lock()

Pixels = NDArray[np.uint8]


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarray fields with == is ambiguous
class AuditImage:
    """One member or non-member image, decoded by the module's image policy.

    ``pixels`` is a read-only uint8 array of shape ``(resolution, resolution, 3)`` (RGB).
    """

    path: Path
    caption: str
    pixels: Pixels


@dataclass(frozen=True)
class Domain:
    """A privacy domain: its prompt and its member / non-member images, sorted by file name."""

    name: str
    prompt: str
    members: tuple[AuditImage, ...]
    nonmembers: tuple[AuditImage, ...]


@dataclass(frozen=True)
class AuditData:
    """A checked audit-data folder: its domains (sorted by name) and the ``known/`` image paths."""

    root: Path
    domains: tuple[Domain, ...]
    known: tuple[Path, ...]
    resolution: int
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    @property
    def domain_names(self) -> tuple[str, ...]:
        """The loaded domains' names, in order."""
        return tuple(domain.name for domain in self.domains)

    def domain(self, name: str) -> Domain:
        """The loaded domain called ``name``; :class:`UsageError` if there is none."""
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise UsageError(f"no domain {name!r} in {self.root}; loaded domains: "
                         f"{', '.join(self.domain_names)}. Pick one of those.")

    def known_images(self, resolution: int | None = None) -> Iterator[tuple[Path, Pixels]]:
        """Decode the ``known/`` images lazily, in path order, as ``(path, pixels)`` pairs.

        ``resolution`` defaults to the one the data was loaded at. A file that cannot be
        decoded raises :class:`AuditDataError` when the iteration reaches it.
        """
        size = self.resolution if resolution is None else _check_resolution(resolution)
        for path in self.known:
            yield path, load_image(path, size, max_image_pixels=self.max_image_pixels)

    def index_images(self, resolution: int | None = None) -> Iterator[tuple[Path, Pixels]]:
        """Everything the extraction index holds: each loaded domain's members, then ``known/``.

        Only the domains selected at load time contribute members.
        """
        size = self.resolution if resolution is None else _check_resolution(resolution)
        for domain in self.domains:
            for image in domain.members:
                # Members are already decoded at the load resolution; reuse them.
                pixels = image.pixels if size == self.resolution else load_image(
                    image.path, size, max_image_pixels=self.max_image_pixels)
                yield image.path, pixels
        yield from self.known_images(size)


def load_audit_data(root: Path, resolution: int, *, domains: Sequence[str] | None = None,
                    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> AuditData:
    """Load and check the audit-data folder ``root``; see the module docstring for the rules.

    ``domains`` selects domains by folder name (default: all); folders not selected are not
    read, so a broken one does not block the others. Images come back at
    ``resolution × resolution``; images over ``max_image_pixels`` are refused.

    Raises :class:`AuditDataError` for a folder that breaks the layout,
    :class:`NothingToScanError` when ``root`` holds no domain folder and :class:`UsageError`
    for a bad selection or argument.
    """
    _check_resolution(resolution)
    if max_image_pixels < 1:
        raise UsageError(f"max_image_pixels must be a positive pixel count, got "
                         f"{max_image_pixels}. Pass e.g. {DEFAULT_MAX_IMAGE_PIXELS}.")
    root = _check_root(root)
    real_root = root.resolve()
    found = _domain_folders(root, real_root)
    selected = _select(root, found, domains)
    loaded = tuple(_load_domain(found[name], real_root, resolution, max_image_pixels)
                   for name in selected)
    known = _known_paths(root, real_root)
    return AuditData(root=root, domains=loaded, known=known, resolution=resolution,
                     max_image_pixels=max_image_pixels)


def list_domains(root: Path, domains: Sequence[str] | None = None) -> list[str]:
    """The names of the (selected) domains under ``root``, without reading any image.

    Cheap enough to call at test-collection time; raises as :func:`load_audit_data` does for a
    missing root, no domain folder or a bad selection.
    """
    root = _check_root(Path(root))
    return _select(root, _domain_folders(root, root.resolve()), domains)


def load_image(path: Path, resolution: int, *,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Pixels:
    """Decode one PNG or JPEG file and apply the image policy; :class:`AuditDataError` if bad."""
    try:
        with open(path, "rb") as handle:
            with _pillow_pixel_limit(max_image_pixels):
                opened = Image.open(handle, formats=_PILLOW_FORMATS)
            opened.load()  # decode now, while the handle is open and errors are still ours
            # EXIF parsing reads user bytes too, so it belongs inside the guarded block.
            image = ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise AuditDataError(
            f"{path}: image is larger than the limit of {max_image_pixels:,} pixels ({exc}). "
            "Downscale the file, or raise max_image_pixels if it is trusted.") from exc
    except _DECODE_ERRORS as exc:
        raise AuditDataError(
            f"{path}: cannot be read as a PNG or JPEG image ({type(exc).__name__}: {exc}). "
            "Expected an intact PNG or JPEG file; re-export or remove it.") from exc
    return prepare_image(image, resolution)


def prepare_image(image: Image.Image, resolution: int) -> Pixels:
    """Apply the image policy to a decoded Pillow image: RGB, square, ``resolution``², uint8.

    Public so that generated images meet exactly the same policy as the audit data. EXIF
    orientation is not applied here: :func:`load_image` does it while decoding a file.
    """
    rgb = _to_rgb(image)
    square = _center_square(rgb)
    if square.size != (resolution, resolution):
        square = square.resize((resolution, resolution), Image.Resampling.BICUBIC)
    pixels = np.array(square, dtype=np.uint8)  # a copy: the caller may keep it for long
    pixels.flags.writeable = False  # AuditImage is frozen; keep its pixels frozen too
    return pixels


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(image)
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's own convert("L") clips 16-bit values at 255, turning most images white.
    values = np.clip(np.asarray(image).astype(np.float64), 0, 65535)
    gray = np.rint(values * (255.0 / 65535.0)).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def _center_square(image: Image.Image) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    if width == height:
        return image
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


@contextmanager
def _pillow_pixel_limit(limit: int) -> Iterator[None]:
    # Pillow's decompression-bomb guard is a module global checked in Image.open. Set it to our
    # limit only around the header read, turn its warning into an error, and put the caller's
    # value back; the lock stops concurrent loaders from restoring each other's values.
    with _PIXEL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise UsageError(f"resolution must be a positive integer, got {resolution!r}. "
                         "Pass the model's image size, e.g. 512.")
    return resolution


def _check_root(root: Path) -> Path:
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise AuditDataError(f"{root}: audit-data folder does not exist. Expected a folder with "
                             "one sub-folder per domain (README, audit data); check the path.")
    if not root.is_dir():
        raise AuditDataError(f"{root}: is not a folder. Expected the audit-data folder that "
                             "holds one sub-folder per domain; pass that folder instead.")
    return root


def _inside(path: Path, real_root: Path) -> Path:
    """``path`` resolved; an error when a symlink takes it outside the data folder."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13
        if isinstance(exc, OSError) and exc.errno != errno.ELOOP:
            # e.g. ENAMETOOLONG: folders nested too deep for the system, no loop at all
            why = exc.strerror or exc
            raise AuditDataError(f"{str(path)[:200]}...: cannot be resolved ({why}; "
                                 f"{len(path.parts)} path parts, no symlink loop). Flatten the "
                                 "folders of the audit data.") from None
        raise AuditDataError(f"{path}: cannot be resolved ({exc}). Remove the symlink "
                             "loop.") from exc
    if not real.is_relative_to(real_root):
        raise AuditDataError(
            f"{path}: symlink leaves the data folder (it resolves to {real}, outside "
            f"{real_root}). Copy the file into the audit-data folder or remove the link.")
    return real


def _entries(folder: Path, real_root: Path) -> list[Path]:
    """Non-hidden entries of ``folder`` sorted by name, each checked to stay inside the root."""
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError as exc:
        raise AuditDataError(f"{folder}: cannot list the folder ({exc}). Check that it is a "
                             "readable folder.") from exc
    paths = [folder / name for name in names if not name.startswith(".")]
    for path in paths:
        _inside(path, real_root)
    return paths


def _domain_folders(root: Path, real_root: Path) -> dict[str, Path]:
    found = {path.name: path for path in _entries(root, real_root)
             if path.is_dir() and path.name != KNOWN_FOLDER}
    if not found:
        raise NothingToScanError(
            f"{root}: holds no domain folder. Expected at least one <domain>/ sub-folder with "
            "prompt.txt, members/ and nonmembers/ (README, audit data); add one or fix the path.")
    for name, path in found.items():
        if name in RESERVED_DOMAIN_NAMES:
            raise AuditDataError(f"{path}: the domain name {name!r} is reserved for the "
                                 "report's aggregate rows. Rename the folder.")
    return found


def _select(root: Path, found: dict[str, Path], wanted: Sequence[str] | None) -> list[str]:
    if wanted is None:
        return sorted(found)
    if isinstance(wanted, str):  # a bare string would be read as a list of letters
        wanted = [wanted]
    known = ", ".join(sorted(found))
    if not wanted:
        raise UsageError(f"the domain selection is empty; {root} holds: {known}. Select at "
                         "least one, or leave the selection out to scan all.")
    unknown = sorted(set(wanted) - set(found))
    if unknown:
        raise UsageError(f"unknown domain(s) {', '.join(map(repr, unknown))} in the selection; "
                         f"{root} holds: {known}. Select among those.")
    return sorted(set(wanted))


@dataclass(frozen=True)
class DomainFiles:
    """A domain's layout, checked but not decoded: its prompt, image files and captions."""

    name: str
    prompt: str
    members: tuple[Path, ...]
    nonmembers: tuple[Path, ...]
    captions: dict[Path, str]  # only the images captions.jsonl names; the rest use the prompt


def list_domain_files(root: Path, domains: Sequence[str] | None = None
                      ) -> tuple[DomainFiles, ...]:
    """Every (selected) domain's files by the rules of :func:`load_audit_data`, without
    decoding an image: cheap, for tools that rearrange a folder (the null audit)."""
    root = _check_root(Path(root))
    real_root = root.resolve()
    found = _domain_folders(root, real_root)
    return tuple(_domain_files(found[name], real_root)
                 for name in _select(root, found, domains))


MAX_PER_SPLIT = 2000
"""The most members (or non-members) a domain may hold: the gate holds every label permutation
of every image of a domain in memory (9,999 labellings × n, several arrays of it), which grows
past a few GB beyond this; a larger set is refused by name before any image is decoded."""


def _domain_files(folder: Path, real_root: Path) -> DomainFiles:
    prompt = _read_prompt(folder / "prompt.txt", real_root)
    files = {split: _image_files(folder, split, real_root) for split in SPLITS}
    for split, paths in files.items():
        if len(paths) > MAX_PER_SPLIT:
            raise AuditDataError(
                f"{folder / split}: {len(paths)} images, more than the {MAX_PER_SPLIT} a domain's "
                f"{split} may hold (the gate's permutation tests keep every labelling of every "
                f"image in memory). Draw a seeded subset: s2l-scan data build --per-domain "
                f"{MAX_PER_SPLIT} (or split the domain into several)")
    captions = _read_captions(folder / "captions.jsonl", real_root, files)
    return DomainFiles(folder.name, prompt, files["members"], files["nonmembers"], captions)


def _load_domain(folder: Path, real_root: Path, resolution: int, max_pixels: int) -> Domain:
    files = _domain_files(folder, real_root)

    def load(paths: tuple[Path, ...]) -> tuple[AuditImage, ...]:
        return tuple(
            AuditImage(path=path, caption=files.captions.get(path, files.prompt),
                       pixels=load_image(path, resolution, max_image_pixels=max_pixels))
            for path in paths)

    return Domain(name=folder.name, prompt=files.prompt, members=load(files.members),
                  nonmembers=load(files.nonmembers))


MAX_PROMPT_BYTES = 4096
"""The longest prompt or caption read: far above what a text encoder reads (77 CLIP tokens are
a few hundred bytes), far below what tokenizing costs memory (a 10 MB prompt.txt took 2.5 GB)."""


def _read_prompt(path: Path, real_root: Path) -> str:
    _inside(path, real_root)
    if not path.is_file():
        raise AuditDataError(f"{path}: missing. Expected a prompt.txt file holding the domain's "
                             "prompt on one line, e.g. 'photo of identity 3'; create it.")
    size = path.stat().st_size
    if size > MAX_PROMPT_BYTES:
        raise AuditDataError(f"{path}: {size} bytes; a prompt is one line of at most "
                             f"{MAX_PROMPT_BYTES} bytes (the text encoder reads at most its "
                             "tokenizer's model_max_length tokens, 77 for CLIP). Shorten it.")
    text = _read_text(path).strip()
    if not text:
        raise AuditDataError(f"{path}: the prompt is empty. Expected the domain's prompt on one "
                             "line, e.g. 'photo of identity 3'; write it into the file.")
    if "\n" in text or "\r" in text:
        raise AuditDataError(f"{path}: holds several lines. Expected the domain's prompt on "
                             "exactly one line; join or remove the extra lines.")
    return text


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: tolerate the byte-order mark that Windows editors put in front.
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditDataError(f"{path}: cannot be read as UTF-8 text ({exc}). Save it as a "
                             "readable UTF-8 text file.") from exc


MIN_PER_SPLIT = 2
"""Members (and non-members) a domain needs: one in each cross-fitting half."""


def _image_files(domain: Path, split: str, real_root: Path) -> tuple[Path, ...]:
    folder = domain / split
    _inside(folder, real_root)
    if not folder.is_dir():
        raise AuditDataError(f"{folder}: missing. Domain {domain.name!r} needs a {split}/ "
                             f"folder of {IMAGE_KINDS} images; create it and add images.")
    images = tuple(path for path in _entries(folder, real_root) if _is_image_file(path))
    if not images:
        raise AuditDataError(
            f"{folder}: no {IMAGE_KINDS} image, so domain {domain.name!r} is one-sided. A "
            "membership test needs both members and non-members; add images to it.")
    if len(images) < MIN_PER_SPLIT:
        # a usage error (exit 4): the audit set given cannot be judged at all, whatever the model
        raise UsageError(
            f"{folder}: holds {len(images)} image. Domain {domain.name!r} needs at least "
            f"{MIN_PER_SPLIT} {split}: every figure is cross-fitted, chosen on one half of each "
            "split and measured on the other, so each half needs one; add images to it.")
    return images


def _is_image_file(path: Path) -> bool:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    if path.is_symlink() and not path.exists():
        raise AuditDataError(f"{path}: broken symlink. Point it at an existing image inside "
                             "the audit-data folder, or remove it.")
    return path.is_file()  # a folder named x.png, or a pipe, is not an image


def _known_paths(root: Path, real_root: Path) -> tuple[Path, ...]:
    folder = root / KNOWN_FOLDER
    if not folder.exists() and not folder.is_symlink():
        return ()
    _inside(folder, real_root)
    if not folder.is_dir():
        raise AuditDataError(f"{folder}: is not a folder. Expected known/ to be a folder of "
                             "extra images for the extraction index; rename or remove it.")
    found: list[Path] = []
    _walk_known(folder, real_root, set(), found)
    return tuple(found)


def image_folder(folder: Path) -> tuple[Path, ...]:
    """The image files under ``folder`` (recursively, sorted per folder), by the rules of
    ``known/``: hidden files skipped, symlinks followed only while they stay inside it."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of images; give an existing folder")
    found: list[Path] = []
    _walk_known(folder, folder.resolve(), set(), found)
    return tuple(found)


def _walk_known(folder: Path, real_root: Path, seen: set[Path], found: list[Path]) -> None:
    # A symlinked sub-folder may point back up the tree; visit each real folder once.
    real = folder.resolve()
    if real in seen:
        return
    seen.add(real)
    for path in _entries(folder, real_root):
        if path.is_dir():
            _walk_known(path, real_root, seen, found)
        elif _is_image_file(path):
            found.append(path)


CaptionMap = dict[Path, str]


def _read_captions(path: Path, real_root: Path,
                   files: dict[str, tuple[Path, ...]]) -> CaptionMap:
    if not path.exists() and not path.is_symlink():
        return {}
    _inside(path, real_root)
    if not path.is_file():
        raise AuditDataError(f"{path}: is not a file. Expected captions.jsonl to be a JSON-lines "
                             "file; rename or remove it.")
    lookup = _caption_lookup(files)
    captions: CaptionMap = {}
    first_line: dict[Path, int] = {}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) carry nothing
        image, caption = _parse_caption_line(path, number, line, lookup)
        if len(caption.encode("utf-8")) > MAX_PROMPT_BYTES:
            raise _caption_error(path, number, f"a caption of more than {MAX_PROMPT_BYTES} "
                                 "bytes", "shorten it (the text encoder reads at most its "
                                 "tokenizer's model_max_length tokens)")
        if image in first_line:
            raise _caption_error(path, number, f"a second caption for {image.name!r} (first on "
                                 f"line {first_line[image]})", "keep one line per image")
        first_line[image] = number
        captions[image] = caption
    return captions


def _caption_lookup(files: dict[str, tuple[Path, ...]]) -> dict[str, list[Path]]:
    """Every accepted spelling of each image ("members/x.png" and "x.png") to its paths."""
    lookup: dict[str, list[Path]] = {}
    for split, paths in files.items():
        for image in paths:
            lookup.setdefault(f"{split}/{image.name}", []).append(image)
            lookup.setdefault(image.name, []).append(image)
    return lookup


def _parse_caption_line(path: Path, number: int, line: str,
                        lookup: dict[str, list[Path]]) -> tuple[Path, str]:
    expected = 'write each line as an object like {"file": "members/0001.png", "caption": "..."}'
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _caption_error(path, number, f"not valid JSON ({exc.msg})", expected) from exc
    if not isinstance(record, dict):
        raise _caption_error(path, number, "not a JSON object", expected)
    missing = [key for key in ("file", "caption") if key not in record]
    if missing:
        raise _caption_error(path, number, f"missing key(s) {', '.join(missing)}", expected)
    name, caption = record["file"], record["caption"]
    if not isinstance(name, str):
        raise _caption_error(path, number, f'"file" is {type(name).__name__}', expected)
    if not isinstance(caption, str) or not caption.strip():
        raise _caption_error(path, number, f'"caption" is {caption!r}, not a non-empty string',
                             'give a text caption, or drop the line to use the prompt')
    return _match_caption_file(path, number, name, lookup), caption.strip()


def _match_caption_file(path: Path, number: int, name: str,
                        lookup: dict[str, list[Path]]) -> Path:
    matches = lookup.get(str(PurePosixPath(name)), [])
    if not matches:
        raise _caption_error(path, number, f"unknown file {name!r}", "name an image of this "
                             'domain as "members/<name>", "nonmembers/<name>" or "<name>"')
    if len(matches) > 1:
        raise _caption_error(path, number, f"{name!r} is both a member and a non-member",
                             'prefix it with "members/" or "nonmembers/"')
    return matches[0]


def _caption_error(path: Path, number: int, problem: str, fix: str) -> AuditDataError:
    return AuditDataError(f"{path}, line {number}: {problem}. Fix: {fix}.")
