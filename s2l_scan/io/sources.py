"""Read a fine-tuning set as a releaser has it: images with captions in a common convention.

``read_source(path)`` recognises, in this order:

* **a CSV or JSONL manifest** (``path`` is a ``.csv`` / ``.jsonl`` file): one row per image,
  the file in a column named ``file_name``, ``file``, ``image``, ``path`` or ``filename``
  (exactly one of them) and an optional caption in ``text``, ``caption`` or ``prompt``. Paths
  are relative to the manifest's folder (absolute paths are accepted too).
* **a Hugging Face imagefolder**: a folder holding ``metadata.jsonl`` or ``metadata.csv``
  (at its root or in sub-folders), whose rows name ``file_name`` relative to the metadata
  file's folder and carry the caption in ``text`` (or ``caption`` / ``prompt``). Every image of
  the folder must be named by a metadata row.
* **a kohya-ss DreamBooth folder**: sub-folders named ``N_concept`` (N repeats), as
  sd-scripts' ``train_util.DreamBoothDataset`` reads them: only the images directly in each
  concept folder (its sub-folders, e.g. ``rejected/``, are never trained on), a concept folder
  linked from elsewhere followed (kohya follows it), the caption the first line of
  ``image.txt`` / ``image.caption`` (kohya's ``read_caption`` keeps ``lines[0]``), and an
  image without one captioned with the folder's class tokens (``10_sks dog`` → ``sks dog``).
* **caption files** (kohya style): ``image.png`` beside ``image.txt`` (or ``image.caption``),
  in any sub-folder. An image without a caption file has no caption (the domain prompt is used);
  a caption file without its image is an error.
* **a plain folder** of images, searched recursively, no captions.

Images are ``.png/.jpg/.jpeg/.webp`` files (the audit reader's list); an image format some
trainer reads but the audit cannot hold (``.jfif``, ``.tif``, ``.bmp``, ...) is an error naming
the file, never skipped (a skipped training image's copies would stay among the non-members);
OneTrainer's ``-masklabel.png`` masks are masks, not training images, and are left out. Hidden
files are skipped, and a folder walk follows symlinks only while they stay inside the folder, as the
audit reader's ``known/`` does. Nothing is decoded here and nothing is ever written: a
:class:`Source` is the list of image files, each with its path relative to the source (its
first folder can name a domain) and its caption or ``None``.

Every problem is an :class:`~s2l_scan.errors.AuditDataError` naming the file (and line).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from s2l_scan.errors import AuditDataError
from s2l_scan.io.audit_data import IMAGE_KINDS, IMAGE_SUFFIXES, image_folder

FILE_KEYS = ("file_name", "file", "image", "path", "filename")
CAPTION_KEYS = ("text", "caption", "prompt")
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
CAPTION_SUFFIXES = (".txt", ".caption")
CONVENTIONS = ("csv", "jsonl", "imagefolder", "kohya", "caption-files", "folder")
# formats trainers read (diffusers: .jfif via PIL; OneTrainer: .tif; kohya: .bmp / .avif / .jxl)
TRAINER_ONLY_SUFFIXES = (".jfif", ".tif", ".tiff", ".bmp", ".avif", ".jxl", ".gif")
MASK_SUFFIX = "-masklabel"  # OneTrainer's mask beside image.png: image-masklabel.png
_KOHYA_CONCEPT = re.compile(r"^(\d+)_(.+)$")
"""The conventions :func:`read_source` recognises, by the name it records."""


@dataclass(frozen=True)
class SourceImage:
    """One image of a source: its file, its path relative to the source and its caption."""

    path: Path
    relative: PurePosixPath
    caption: str | None
    origin: str
    """Where the image was named: "metadata.jsonl, line 3", "x.txt", or the file itself."""


@dataclass(frozen=True)
class Source:
    """A read source: the path given, the convention found and its images in a stable order."""

    root: Path
    convention: str
    images: tuple[SourceImage, ...]
    uncaptioned: int
    """Images with no caption (they get the domain prompt)."""


def read_source(path: Path, role: str = "source") -> Source:
    """The images of ``path`` (a manifest file or a folder), by the conventions above.

    ``role`` names the source in messages (``--members``). Raises :class:`AuditDataError` for
    a missing or unreadable source, a malformed manifest, a caption naming a missing file or a
    source with no image.
    """
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise AuditDataError(f"{role} {root}: does not exist. Give a folder of images or a "
                             ".csv / .jsonl manifest; check the path.")
    if root.is_file():
        kind = root.suffix.lower().lstrip(".")
        if kind not in ("csv", "jsonl"):
            raise AuditDataError(f"{role} {root}: is a file but not a .csv or .jsonl manifest. "
                                 "Give a folder of images or a manifest listing them.")
        images = _manifest(root, root.parent, kind)
        convention = kind
    elif root.is_dir():
        convention, images = _folder(root)
    else:
        raise AuditDataError(f"{role} {root}: is neither a folder nor a file; give a folder of "
                             "images or a .csv / .jsonl manifest.")
    if not images:
        raise AuditDataError(f"{role} {root}: holds no {IMAGE_KINDS} image ({convention}). "
                             "Point it at the images, or convert them to one of those formats.")
    images = sorted(images, key=lambda image: (str(image.relative), str(image.path)))
    _check_unique(images, root)
    return Source(root=root, convention=convention, images=tuple(images),
                  uncaptioned=sum(image.caption is None for image in images))


# ---------------------------------------------------------------------------------------------
# folders


def _folder(root: Path) -> tuple[str, list[SourceImage]]:
    _refuse_trainer_only_formats(root)
    concepts = _kohya_concepts(root)
    if concepts:
        return "kohya", [image for folder in concepts for image in _kohya_images(root, folder)]
    files = tuple(path for path in image_folder(root) if not _is_mask(path))
    metadata = [path for path in _walk(root) if path.name in METADATA_NAMES]
    if metadata:
        return "imagefolder", _imagefolder(root, metadata, files)
    captions = [path for path in _walk(root) if path.suffix.lower() in CAPTION_SUFFIXES]
    if captions:
        return "caption-files", _caption_files(root, files, captions)
    return "folder", [SourceImage(path, _relative(path, root), None, path.name)
                      for path in files]


def _is_mask(path: Path) -> bool:
    return path.stem.endswith(MASK_SUFFIX)


def _refuse_trainer_only_formats(root: Path) -> None:
    odd = [path for path in _walk(root) if path.suffix.lower() in TRAINER_ONLY_SUFFIXES]
    if odd:
        raise AuditDataError(
            f"{odd[0]}: a {odd[0].suffix} image ({len(odd)} such file(s) in {root}). Trainers "
            f"read it, so it may be a training image, but an audit holds {IMAGE_KINDS} only; "
            "convert it (e.g. to .png, keeping its caption file's name) and build again.")


def _kohya_concepts(root: Path) -> list[Path]:
    """The ``N_concept`` folders of a kohya DreamBooth folder (all its visible sub-folders
    must be concepts and it holds no image of its own), else []."""
    entries = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    folders = [p for p in entries if p.is_dir()]
    if not folders or any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return []
    return folders if all(_KOHYA_CONCEPT.match(p.name) for p in folders) else []


def _kohya_images(root: Path, folder: Path) -> list[SourceImage]:
    """The images kohya trains on in one concept folder, with their captions."""
    class_tokens = _KOHYA_CONCEPT.match(folder.name)[2]  # type: ignore[index]  # matched above
    images: list[SourceImage] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or _is_mask(path) or \
                path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        caption_files = [path.with_suffix(s) for s in CAPTION_SUFFIXES
                         if path.with_suffix(s).is_file()]
        caption = _caption_text(caption_files[0], first_line=True) if caption_files else None
        relative = PurePosixPath(folder.name, path.name)
        images.append(SourceImage(path.absolute(), relative, caption or class_tokens,
                                  caption_files[0].name if caption_files else path.name))
    orphans = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in CAPTION_SUFFIXES
               and not any(p.with_suffix(s).is_file() for s in IMAGE_SUFFIXES)]
    if orphans:
        raise AuditDataError(f"{orphans[0]}: a caption file whose image is missing (no "
                             f"{path_stem_kinds(orphans[0])} beside it in the training folder "
                             f"{root}). Restore the image or remove the caption file.")
    return images


def _walk(root: Path) -> Iterator[Path]:
    """Every non-hidden file under ``root`` (symlinked folders are not entered here)."""
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_file():
            yield path


def _imagefolder(root: Path, metadata: list[Path], files: tuple[Path, ...]
                 ) -> list[SourceImage]:
    images: list[SourceImage] = []
    for path in metadata:
        kind = "jsonl" if path.suffix == ".jsonl" else "csv"
        images += _manifest(path, path.parent, kind, relative_to=root)
    named = {image.path.resolve() for image in images}
    unnamed = [path for path in files if path.resolve() not in named]
    if unnamed:
        raise AuditDataError(
            f"{unnamed[0]}: an image of the imagefolder {root} that no metadata file names "
            f"({len(unnamed)} such image(s)). Add a row for it to {metadata[0].name}, or move "
            "it out of the folder.")
    return images


def _caption_files(root: Path, files: tuple[Path, ...], captions: list[Path]
                   ) -> list[SourceImage]:
    by_stem = {path.with_suffix(""): path for path in files}
    orphans = [path for path in captions if path.with_suffix("") not in by_stem]
    if orphans:
        raise AuditDataError(
            f"{orphans[0]}: a caption file whose image is missing (no "
            f"{path_stem_kinds(orphans[0])} beside it; {len(orphans)} such file(s)). Restore "
            "the image or remove the caption file.")
    caption_of: dict[Path, Path] = {}
    for path in captions:
        image = by_stem[path.with_suffix("")]
        if image in caption_of:
            raise AuditDataError(f"{image}: has two caption files, {caption_of[image].name} "
                                 f"and {path.name}. Keep one.")
        caption_of[image] = path
    return [SourceImage(path, _relative(path, root),
                        _caption_text(caption_of[path]) if path in caption_of else None,
                        caption_of[path].name if path in caption_of else path.name)
            for path in files]


def path_stem_kinds(path: Path) -> str:
    """``x.png/.jpg/...`` for messages about the image a caption file ``x.txt`` lacks."""
    return f"{path.stem}{IMAGE_KINDS}"


def _caption_text(path: Path, first_line: bool = False) -> str | None:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditDataError(f"{path}: cannot be read as UTF-8 text ({exc}). Save the caption "
                             "as a UTF-8 text file.") from exc
    if first_line:  # kohya-ss read_caption: lines[0].strip()
        text = text.splitlines()[0] if text.splitlines() else ""
    text = " ".join(text.split())  # one line: kohya captions are often wrapped
    return text or None


def _relative(path: Path, root: Path) -> PurePosixPath:
    return PurePosixPath(path.relative_to(root).as_posix())


# ---------------------------------------------------------------------------------------------
# manifests (CSV, JSONL, imagefolder metadata)


def _manifest(path: Path, base: Path, kind: str, relative_to: Path | None = None
              ) -> list[SourceImage]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditDataError(f"{path}: cannot be read as UTF-8 text ({exc}). Save it as a "
                             "readable UTF-8 file.") from exc
    rows = _csv_rows(path, text) if kind == "csv" else _jsonl_rows(path, text)
    anchor = base if relative_to is None else relative_to
    images: list[SourceImage] = []
    seen: dict[Path, int] = {}
    for number, record in rows:
        where = f"{path}, line {number}"
        name = _field(record, FILE_KEYS, where, required=True)
        caption = _field(record, CAPTION_KEYS, where, required=False)
        image = _named_file(base, name or "", where)
        real = image.resolve()
        if real in seen:
            raise AuditDataError(f"{where}: names {name!r} again (first on line {seen[real]}). "
                                 "Keep one row per image.")
        seen[real] = number
        relative = (_relative(image, anchor) if image.is_relative_to(anchor)
                    else PurePosixPath(image.name))
        images.append(SourceImage(image, relative, caption,
                                  f"{path.name}, line {number}"))
    return images


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        if not set(header) & set(FILE_KEYS):
            raise AuditDataError(f"{path}: the header {header} has no file column. Name the "
                                 f"column of image paths one of {', '.join(FILE_KEYS)}.")
        for row in reader:
            if None in row:
                raise AuditDataError(f"{path}, line {reader.line_num}: more fields than the "
                                     "header has; quote captions that hold commas.")
            if any(value for value in row.values()):
                yield reader.line_num, dict(row)
    except csv.Error as exc:
        raise AuditDataError(f"{path}: not valid CSV ({exc}). Save it as comma-separated "
                             "values with a header row.") from exc


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuditDataError(f"{path}, line {number}: not valid JSON ({exc.msg}). Write "
                                 'one object per line, e.g. {"file_name": "0001.png", '
                                 '"text": "..."}.') from exc
        if not isinstance(record, dict):
            raise AuditDataError(f"{path}, line {number}: not a JSON object. Write one object "
                                 'per line, e.g. {"file_name": "0001.png", "text": "..."}.')
        yield number, record


def _field(record: dict[str, object], keys: tuple[str, ...], where: str, *, required: bool
           ) -> str | None:
    present = [key for key in keys if key in record and record[key] not in (None, "")]
    if len(present) > 1:
        raise AuditDataError(f"{where}: both {present[0]!r} and {present[1]!r} are given; "
                             "keep one of them.")
    if not present:
        if required:
            raise AuditDataError(f"{where}: no image file named. Give it under one of "
                                 f"{', '.join(FILE_KEYS)}.")
        return None
    value = record[present[0]]
    if not isinstance(value, str):
        raise AuditDataError(f"{where}: {present[0]!r} is {type(value).__name__}, not text. "
                             "Write it as a string.")
    text = " ".join(value.split())
    return text or None


def _named_file(base: Path, name: str, where: str) -> Path:
    path = Path(name).expanduser()
    image = path if path.is_absolute() else base / path
    if image.suffix.lower() not in IMAGE_SUFFIXES:
        raise AuditDataError(f"{where}: {name!r} is not a {IMAGE_KINDS} image. Convert it, or "
                             "drop the row.")
    if not image.is_file():
        raise AuditDataError(f"{where}: names {name!r}, but {image} does not exist. Fix the "
                             "path (relative to the manifest's folder) or drop the row.")
    return image.absolute()


def _check_unique(images: list[SourceImage], root: Path) -> None:
    seen: dict[Path, SourceImage] = {}
    for image in images:
        real = image.path.resolve()
        if real in seen:
            raise AuditDataError(f"{root}: {image.path} is named twice ({seen[real].origin} "
                                 f"and {image.origin}). Keep one entry per image.")
        seen[real] = image
