"""`s2l-scan data build`: sources in each convention, domains, duplicates, shift, bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2l_scan.audit_build import MANIFEST_NAME, BuildOptions, build_audit, domain_folder_name
from s2l_scan.cli import main
from s2l_scan.errors import AuditDataError, UsageError
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.sources import read_source

RES = 16
DELTA = 0.1


def pixels(seed: int, *, noise: float = 0.0) -> np.ndarray:
    """A smooth random image (a 4×4 colour grid upsampled); ``noise`` adds i.i.d. grain."""
    rng = np.random.default_rng(seed)
    grid = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    smooth = np.asarray(grid.resize((RES, RES), Image.Resampling.BICUBIC), dtype=np.float64)
    grain = rng.normal(0.0, noise, smooth.shape) if noise else 0.0
    return np.clip(np.rint(smooth + grain), 0, 255).astype(np.uint8)


def save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def rms(a: np.ndarray, b: np.ndarray) -> float:
    """Independent oracle of the pixel distance: RMS of [0, 1] pixels."""
    return float(np.sqrt(np.mean((a / 255.0 - b / 255.0) ** 2)))


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


# ---- one writer per convention: (folder, {relative path: caption or None}) -> the SRC to pass

Images = dict[str, str | None]


def imagefolder_jsonl(root: Path, images: Images) -> Path:
    lines = [json.dumps({"file_name": name, "text": caption}) for name, caption in images.items()]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def imagefolder_csv(root: Path, images: Images) -> Path:
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text"])
        writer.writerows([name, caption or ""] for name, caption in images.items())
    return root


def caption_files(root: Path, images: Images) -> Path:
    for name, caption in images.items():
        if caption is not None:
            (root / name).with_suffix(".txt").write_text(caption + "\n")
    return root


def csv_manifest(root: Path, images: Images) -> Path:
    manifest = root / "list.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows([name, caption or ""] for name, caption in images.items())
    return manifest


def jsonl_manifest(root: Path, images: Images) -> Path:
    manifest = root / "list.jsonl"
    manifest.write_text("".join(json.dumps({"file": name, "caption": caption}) + "\n"
                                for name, caption in images.items()))
    return manifest


def plain_folder(root: Path, images: Images) -> Path:
    return root


CONVENTIONS: dict[str, Callable[[Path, Images], Path]] = {
    "imagefolder": imagefolder_jsonl, "imagefolder-csv": imagefolder_csv,
    "caption-files": caption_files, "csv": csv_manifest, "jsonl": jsonl_manifest,
    "folder": plain_folder}
FOUND_AS = {"imagefolder-csv": "imagefolder"}


def make_source(root: Path, convention: str, images: dict[str, np.ndarray],
                captions: Images | None = None) -> Path:
    """Write ``images`` (relative path -> pixels) under ``root`` in ``convention``."""
    for name, image in images.items():
        save(root / name, image)
    captioned: Images = ({name: f"photo of sks, {Path(name).stem}" for name in images}
                         if captions is None else captions)
    return CONVENTIONS[convention](root, captioned)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_each_convention_reads_files_and_captions(tmp_path: Path, convention: str) -> None:
    images = {"a/x.png": pixels(0), "a/y.jpg": pixels(1), "b/z.webp": pixels(2)}
    captions: Images = {"a/x.png": "photo of sks, x", "a/y.jpg": None, "b/z.webp": "sks dog"}
    source = read_source(make_source(tmp_path / "src", convention, images, captions))
    assert source.convention == FOUND_AS.get(convention, convention)
    got = {str(image.relative): image.caption for image in source.images}
    expected = captions if convention != "folder" else dict.fromkeys(captions)
    assert got == expected
    assert source.uncaptioned == sum(c is None for c in expected.values())


@pytest.mark.parametrize(("domains", "keywords", "expected"), [
    ("single", (), {"main": (4, "photo of ohwx (main)")}),  # {concept}: refused under single
    ("subfolders", (), {"ohwx-man": (2, "photo of ohwx man (ohwx-man)"),
                        "sks-dog": (2, "photo of sks dog (sks-dog)")}),
    ("keywords", ("ohwx", "SKS"), {"ohwx": (2, "photo of ohwx (ohwx)"),
                                   "SKS": (2, "photo of SKS (SKS)")}),
])
def test_domains_from_subfolders_keywords_or_one(tmp_path: Path, domains: str,
                                                 keywords: tuple[str, ...],
                                                 expected: dict[str, tuple[int, str]]) -> None:
    def source(root: Path, offset: int) -> Path:
        # kohya folder names: a repeat count, then the concept
        concepts = ["ohwx man", "sks dog"]
        images = {f"{prefix}{concept}/{i}.png": pixels(offset + 10 * k + i)
                  for k, concept in enumerate(concepts) for i in range(2)}
        captions: Images = {f"{prefix}{concept}/{i}.png": f"a photo of {concept}, {i}"
                            for concept in concepts for i in range(2)}
        return make_source(root, "caption-files", images, captions)

    prefix = "10_"
    members = source(tmp_path / "members", 0)
    prefix = ""  # the held-out set has no repeat counts
    nonmembers = source(tmp_path / "held", 500)
    result = build_audit(members, nonmembers, tmp_path / "audit",
                         BuildOptions(resolution=RES, prompt="photo of {concept} ({domain})"
                                      if domains != "single" else "photo of ohwx ({domain})",
                                      domains=domains, keywords=keywords))
    assert {plan.name: (len(plan.members), plan.prompt) for plan in result.domains} == expected
    data = load_audit_data(tmp_path / "audit", RES)
    assert {d.name: (len(d.members), len(d.nonmembers), d.prompt) for d in data.domains} == {
        name: (n, n, prompt) for name, (n, prompt) in expected.items()}


def test_kohya_folder_names_become_domain_names() -> None:
    assert [domain_folder_name(n) for n in ("10_ohwx man", "sks_dog", "5_a/b", "x")] == [
        "ohwx-man", "sks_dog", "a-b", "x"]


def test_copies_across_sets_are_dropped_and_a_distinct_image_is_kept(tmp_path: Path) -> None:
    members = {f"m{i}.png": pixels(i) for i in range(6)}
    jitter = np.clip(pixels(4).astype(int) + np.random.default_rng(9).integers(-4, 5, (
        RES, RES, 3)), 0, 255).astype(np.uint8)
    held = {f"n{i}.png": pixels(100 + i) for i in range(6)}
    held |= {"exact.png": pixels(2), "jitter.png": jitter, "other.png": pixels(200)}
    # the oracle: the copies are within δ of their member, the distinct image of none
    assert rms(jitter, pixels(4)) <= DELTA
    assert min(rms(pixels(200), image) for image in members.values()) > DELTA
    result = build_audit(make_source(tmp_path / "m", "folder", members),
                         make_source(tmp_path / "n", "folder", held), tmp_path / "audit",
                         BuildOptions(resolution=RES, prompt="p"))
    dropped = {d.source.name: (d.reason.split(" of ")[0], d.copy_of.name if d.copy_of else None,
                               d.distance) for d in result.dropped}
    assert dropped == {"exact.png": ("exact copy", "m2.png", 0.0),
                       "jitter.png": ("near copy", "m4.png",
                                      pytest.approx(rms(jitter, pixels(4)), abs=1e-12))}
    kept = {image.path.name for image in result.domains[0].nonmembers}
    assert "other.png" in kept or len(kept) == 6  # balanced to the 6 members, drawn at random
    manifest = json.loads((tmp_path / "audit" / MANIFEST_NAME).read_text())
    assert {Path(d["source"]).name for d in manifest["dropped"]} == {"exact.png", "jitter.png"}


def test_copies_within_a_set_keep_the_first_and_send_member_copies_to_known(
        tmp_path: Path) -> None:
    members = {f"m{i}.png": pixels(i) for i in range(4)} | {"m9-again.png": pixels(1)}
    held = {f"n{i}.png": pixels(100 + i) for i in range(4)} | {"n9-again.png": pixels(102)}
    result = build_audit(make_source(tmp_path / "m", "folder", members),
                         make_source(tmp_path / "n", "folder", held), tmp_path / "audit",
                         BuildOptions(resolution=RES, prompt="p"))
    assert sorted((d.source.name, d.copy_of.name if d.copy_of else "") for d in result.dropped
                  ) == [("m9-again.png", "m1.png"), ("n9-again.png", "n2.png")]
    assert [image.path.name for image in result.known] == ["m9-again.png"]
    data = load_audit_data(tmp_path / "audit", RES)
    assert len(data.known) == 1 and len(data.domains[0].members) == 4


def test_a_member_in_no_domain_still_counts_as_a_training_image(tmp_path: Path) -> None:
    members = {f"m{i}.png": pixels(i) for i in range(3)} | {"plain.png": pixels(50)}
    captions: Images = {f"m{i}.png": f"sks {i}" for i in range(3)}
    captions["plain.png"] = "a dog"
    held = {f"n{i}.png": pixels(100 + i) for i in range(3)} | {"copy.png": pixels(50)}
    held_captions: Images = {name: "sks" for name in held}
    result = build_audit(make_source(tmp_path / "m", "caption-files", members, captions),
                         make_source(tmp_path / "n", "caption-files", held, held_captions),
                         tmp_path / "audit", BuildOptions(resolution=RES, prompt="{concept}",
                                                          domains="keywords",
                                                          keywords=("sks",)))
    reasons = {d.source.name: d.reason for d in result.dropped}
    assert reasons["plain.png"].startswith("in no domain")
    assert reasons["copy.png"] == "exact copy of a member (a training image)"
    assert [image.path.name for image in result.known] == ["plain.png"]


def test_balanced_draw_is_seeded(tmp_path: Path) -> None:
    members = make_source(tmp_path / "m", "folder", {f"m{i}.png": pixels(i) for i in range(9)})
    held = make_source(tmp_path / "n", "folder", {f"n{i}.png": pixels(100 + i)
                                                  for i in range(5)})

    def draw(seed: int, name: str) -> tuple[list[str], list[str]]:
        plan = build_audit(members, held, tmp_path / name, BuildOptions(
            resolution=RES, prompt="p", seed=seed, per_domain=4), dry_run=True).domains[0]
        return [i.path.name for i in plan.members], [i.path.name for i in plan.nonmembers]

    first = draw(0, "a")
    assert first == draw(0, "b") and len(first[0]) == len(first[1]) == 4
    assert any(draw(seed, "c") != first for seed in range(1, 5))
    assert not (tmp_path / "a").exists()  # a dry run writes nothing


# ---- the shift check


def test_a_shifted_heldout_set_warns_and_strict_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    members = make_source(tmp_path / "m", "folder", {f"m{i}.png": pixels(i) for i in range(24)})
    # another source: the same scenes, but grainy (another camera / compression)
    held = make_source(tmp_path / "n", "folder", {f"n{i}.png": pixels(100 + i, noise=25.0)
                                                  for i in range(24)})
    argv = ["data", "build", "--members", str(members), "--nonmembers", str(held),
            "--resolution", str(RES), "--prompt", "p"]
    assert main([*argv, "--out", str(tmp_path / "strict"), "--strict"]) == 1
    printed = capsys.readouterr().out
    assert "SHIFTED" in printed and "warning: held-out set of main is shifted" in printed
    assert not (tmp_path / "strict").exists()
    assert main([*argv, "--out", str(tmp_path / "lenient")]) == 0
    assert "warning: held-out set of main is shifted" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "lenient" / MANIFEST_NAME).read_text())
    assert manifest["shift"][0]["shifted"] is True


def test_a_heldout_set_drawn_alike_passes_strict(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    members = make_source(tmp_path / "m", "folder", {f"m{i}.png": pixels(i) for i in range(24)})
    held = make_source(tmp_path / "n", "folder", {f"n{i}.png": pixels(100 + i)
                                                  for i in range(24)})
    assert main(["data", "build", "--members", str(members), "--nonmembers", str(held),
                 "--out", str(tmp_path / "audit"), "--resolution", str(RES), "--prompt", "p",
                 "--strict"]) == 0
    assert "SHIFTED" not in capsys.readouterr().out


# ---- bad input: a clear error naming the file or domain, the exit code, nothing written


def _garbage(root: Path) -> None:
    (root / "n" / "a" / "broken.png").write_bytes(b"not an image")


def _missing_named(root: Path) -> None:
    with open(root / "m" / "metadata.jsonl", "a") as handle:
        handle.write(json.dumps({"file_name": "gone.png", "text": "x"}) + "\n")


def _bad_json(root: Path) -> None:
    with open(root / "m" / "metadata.jsonl", "a") as handle:
        handle.write("{not json\n")


def _orphan_caption(root: Path) -> None:
    (root / "n" / "lost.txt").write_text("a caption without its image")


def _add_member(root: Path, name: str, image: np.ndarray) -> None:
    save(root / "m" / name, image)
    with open(root / "m" / "metadata.jsonl", "a") as handle:
        handle.write(json.dumps({"file_name": name, "text": "x"}) + "\n")


def _few_in_a_domain(root: Path) -> None:
    _add_member(root, "b/0.png", pixels(300))
    _add_member(root, "b/1.png", pixels(301))
    save(root / "n" / "b" / "0.png", pixels(302))


def _domain_without_heldout(root: Path) -> None:
    _add_member(root, "c/0.png", pixels(400))


def _empty_members(root: Path) -> None:
    shutil.rmtree(root / "m")
    (root / "m").mkdir()


def _outside_out(root: Path) -> None:
    (root / "audit").mkdir()
    (root / "audit" / "mine.txt").write_text("the user's")


BAD = [  # (case, change to the valid sources, extra argv, exit code, words of the message)
    ("unreadable image", _garbage, [], 2, ["broken.png", "cannot be read"]),
    ("caption names a missing file", _missing_named, [], 2, ["metadata.jsonl, line 5",
                                                             "gone.png"]),
    ("manifest line not JSON", _bad_json, [], 2, ["metadata.jsonl, line 5", "not valid JSON"]),
    ("caption file without image", _orphan_caption, [], 2, ["lost.txt", "image is missing"]),
    ("empty source", _empty_members, [], 2, ["--members", "holds no"]),
    ("missing source", lambda root: shutil.rmtree(root / "n"), [], 2, ["--nonmembers",
                                                                       "does not exist"]),
    ("overlapping sets", lambda root: None, ["--nonmembers", "{root}/m"], 2,
     ["is in both --members and --nonmembers"]),
    ("too few for the halves", _few_in_a_domain, ["--domains", "subfolders"], 4,
     ["domain 'b'", "1 nonmembers left", "at least 2"]),
    ("domain with no held-out images", _domain_without_heldout, ["--domains", "subfolders"], 2,
     ["domain 'c'", "no nonmembers"]),
    ("existing output", _outside_out, [], 4, ["exists and is not empty"]),
    ("output inside a source", lambda root: None, ["--out", "{root}/m/audit"], 4,
     ["overlaps the source"]),
    ("keywords without keyword", lambda root: None, ["--domains", "keywords"], 4,
     ["--keyword"]),
    ("a radius outside (0, 1]", lambda root: None, ["--delta", "0"], 4, ["delta must be in"]),
]


@pytest.mark.parametrize(("change", "extra", "code", "words"),
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_a_clear_error_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Callable[[Path], None],
        extra: list[str], code: int, words: list[str]) -> None:
    make_source(tmp_path / "m", "imagefolder",
                {f"a/{i}.png": pixels(i) for i in range(4)})
    make_source(tmp_path / "n", "caption-files",
                {f"a/{i}.png": pixels(100 + i) for i in range(4)})
    change(tmp_path)
    sources = {name: tree_hash(tmp_path / name) for name in ("m", "n")
               if (tmp_path / name).exists()}
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["data", "build", "--members", str(tmp_path / "m"), "--nonmembers",
            str(tmp_path / "n"), "--out", str(tmp_path / "audit"), "--resolution", str(RES),
            "--prompt", "photo of {domain}"]
    argv += [arg.replace("{root}", str(tmp_path)) for arg in extra]
    assert main(argv) == code
    error = capsys.readouterr().err
    # progress lines (plain, timestamped: stderr is no terminal here) may come before it
    last = error.strip().splitlines()[-1]
    assert last.startswith("s2l-scan: error: ") and "Traceback" not in error
    for word in words:
        assert word in error
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp folder
    assert {name: tree_hash(tmp_path / name) for name in sources} == sources


def test_force_replaces_only_an_earlier_build(tmp_path: Path) -> None:
    members = make_source(tmp_path / "m", "folder", {f"m{i}.png": pixels(i) for i in range(3)})
    held = make_source(tmp_path / "n", "folder", {f"n{i}.png": pixels(100 + i)
                                                  for i in range(3)})
    options = BuildOptions(resolution=RES, prompt="first")
    build_audit(members, held, tmp_path / "audit", options)
    build_audit(members, held, tmp_path / "audit", BuildOptions(resolution=RES, prompt="second"),
                force=True)
    assert (tmp_path / "audit" / "main" / "prompt.txt").read_text() == "second\n"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="only a folder written by"):
        build_audit(members, held, tmp_path / "mine", options, force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_an_imagefolder_image_without_metadata_is_named(tmp_path: Path) -> None:
    root = make_source(tmp_path / "m", "imagefolder", {"0.png": pixels(0)})
    save(root / "stray.png", pixels(1))
    with pytest.raises(AuditDataError, match=r"stray\.png"):
        read_source(root)


# ---- the written folder scans


def test_built_folder_loads_and_the_tiny_reference_scans_it(
        tiny_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the reference's own data, rearranged as a releaser has it: an imagefolder of the
    # training set with one sub-folder per identity, and kohya caption files for the held-out
    data = tiny_reference / "data"
    sets = {}
    for split, convention in (("members", "imagefolder"), ("nonmembers", "caption-files")):
        images: dict[str, np.ndarray] = {}
        captions: Images = {}
        for domain in sorted(p for p in data.iterdir() if p.is_dir()):
            prompt = (domain / "prompt.txt").read_text().strip()
            for path in sorted((domain / split).iterdir()):
                name = f"{domain.name}/{path.name}"
                images[name] = np.asarray(Image.open(path).convert("RGB"))
                captions[name] = prompt
        sets[split] = make_source(tmp_path / split, convention, images, captions)
    audit = tmp_path / "audit"
    assert main(["data", "build", "--members", str(sets["members"]), "--nonmembers",
                 str(sets["nonmembers"]), "--out", str(audit), "--resolution", "32",
                 "--prompt", "a photo of {domain}", "--domains", "subfolders"]) == 0
    loaded = load_audit_data(audit, 32)
    original = load_audit_data(data, 32)
    assert loaded.domain_names == original.domain_names
    for built in loaded.domains:
        assert len(built.members) == len(built.nonmembers) >= 2
        assert {m.caption for m in built.members} == {original.domain(built.name).prompt}
    capsys.readouterr()
    code = main(["scan", str(tiny_reference / "model"), "--data", str(audit), "--attacks",
                 "loss", "--bootstrap", "50", "--extraction-samples", "0", "--probes", ""])
    assert code in (0, 1, 6), capsys.readouterr().err
    assert "identity-0" in capsys.readouterr().out


def test_out_may_sit_beside_a_manifest_but_not_hold_its_images(tmp_path: Path) -> None:
    members = make_source(tmp_path / "m", "jsonl", {f"{i}.png": pixels(i) for i in range(2)})
    held = make_source(tmp_path / "n", "folder", {f"{i}.png": pixels(100 + i) for i in range(2)})
    options = BuildOptions(resolution=RES, prompt="p")
    assert build_audit(members, held, tmp_path / "m" / "audit", options).written
    with pytest.raises(UsageError, match="overlaps the source"):
        build_audit(members, held, tmp_path, options, force=True)


@pytest.mark.slow
def test_the_shift_check_rarely_fires_on_sets_drawn_alike(tmp_path: Path) -> None:
    # 200 null audits: members and non-members drawn from one pool. The check claims a false
    # alarm rate of at most 2.5 %; Binomial(200, 0.025) exceeds 12 with probability < 0.001.
    pool = [save(tmp_path / "pool" / f"{i}.png", pixels(i)) for i in range(400)]

    def manifest(name: str, paths: list[Path]) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"file": str(p)}) + "\n" for p in paths))
        return path

    fired = 0
    for draw in range(200):
        picked = np.random.default_rng(draw).choice(len(pool), 48, replace=False)
        result = build_audit(manifest("m", [pool[i] for i in picked[:24]]),
                             manifest("n", [pool[i] for i in picked[24:]]), tmp_path / "out",
                             BuildOptions(resolution=RES, prompt="p", seed=draw), dry_run=True)
        fired += bool(result.shifted)
    assert fired <= 12


def test_the_radius_is_the_one_given(tmp_path: Path) -> None:
    near = np.clip(pixels(1).astype(int) + 6, 0, 255).astype(np.uint8)
    distance = rms(near, pixels(1))
    members = make_source(tmp_path / "m", "folder", {f"m{i}.png": pixels(i) for i in range(3)})
    held = make_source(tmp_path / "n", "folder", {"near.png": near} | {
        f"n{i}.png": pixels(100 + i) for i in range(3)})
    for delta, dropped in ((distance * 0.99, set()), (distance * 1.01, {"near.png"})):
        result = build_audit(members, held, tmp_path / "out", BuildOptions(
            resolution=RES, prompt="p", delta=delta), dry_run=True)
        assert {d.source.name for d in result.dropped} == dropped


def test_concept_under_a_single_domain_is_refused_not_replaced_by_its_name() -> None:
    # was: "a photo of {concept}" silently became "a photo of main", a prompt without the
    # trigger word, so extraction ran on the wrong prompt and could pass for that reason
    with pytest.raises(UsageError, match=r"--prompt uses \{concept\}.*trigger word"):
        BuildOptions(resolution=RES, prompt="a photo of {concept}")
    BuildOptions(resolution=RES, prompt="a photo of {concept}", domains="subfolders")
    BuildOptions(resolution=RES, prompt="a photo of {domain}")  # the name, as documented


def test_force_never_deletes_a_file_the_build_did_not_write(tmp_path: Path) -> None:
    members = make_source(tmp_path / "m", "folder", {f"m{i}.png": pixels(i) for i in range(3)})
    held = make_source(tmp_path / "n", "folder", {f"n{i}.png": pixels(100 + i)
                                                  for i in range(3)})
    options = BuildOptions(resolution=RES, prompt="first")
    # a foreign folder that merely holds a file of the manifest's name
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "audit-manifest.json").write_text("{}")
    (thesis / "thesis.tex").write_text("keep")
    with pytest.raises(UsageError, match="did not write"):
        build_audit(members, held, thesis, options, force=True)
    assert (thesis / "thesis.tex").read_text() == "keep"
    # a real earlier build with a file added beside it by hand
    build_audit(members, held, tmp_path / "audit", options)
    (tmp_path / "audit" / "main" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"main/notes\.txt"):
        build_audit(members, held, tmp_path / "audit", options, force=True)
    assert (tmp_path / "audit" / "main" / "notes.txt").read_text() == "mine"
    (tmp_path / "audit" / "main" / "notes.txt").unlink()
    build_audit(members, held, tmp_path / "audit", BuildOptions(resolution=RES, prompt="2nd"),
                force=True)
    assert (tmp_path / "audit" / "main" / "prompt.txt").read_text() == "2nd\n"


def test_mirrored_copies_of_training_images_never_reach_the_nonmembers(tmp_path: Path) -> None:
    # OneTrainer (by default), kohya --flip_aug and diffusers --random_flip train on mirrored
    # images: a held-out mirror of a member is a member, and a mirror within the training set
    # a second copy of one (known/, so the k rule counts it)
    members = {f"m{i}.png": pixels(i) for i in range(5)} | {"m9-mirror.png": pixels(3)[:, ::-1]}
    held = {f"n{i}.png": pixels(100 + i) for i in range(5)}
    held |= {f"mirror{i}.png": pixels(i)[:, ::-1] for i in (0, 1)}
    # the oracle: each mirror is far from its original as it is, within δ only mirrored back
    for i in (0, 1, 3):
        assert rms(pixels(i)[:, ::-1], pixels(i)) > DELTA
    source_m = make_source(tmp_path / "m", "folder", members)
    source_n = make_source(tmp_path / "n", "folder", held)
    result = build_audit(source_m, source_n, tmp_path / "audit",
                         BuildOptions(resolution=RES, prompt="p"))
    dropped = {d.source.name: (d.reason, d.copy_of.name if d.copy_of else None)
               for d in result.dropped}
    assert dropped == {
        "mirror0.png": ("mirrored copy of a member (a training image)", "m0.png"),
        "mirror1.png": ("mirrored copy of a member (a training image)", "m1.png"),
        "m9-mirror.png": ("mirrored copy of another image of the same set", "m3.png")}
    kept = {image.path.name for image in result.domains[0].nonmembers}
    assert not kept & {"mirror0.png", "mirror1.png"}
    assert [image.path.name for image in result.known] == ["m9-mirror.png"]
    # trained without flips (--no-flips): a mirror is a different image, and stays
    plain = build_audit(source_m, source_n, tmp_path / "plain",
                        BuildOptions(resolution=RES, prompt="p", flips=False), dry_run=True)
    assert not plain.dropped
    assert main(["data", "build", "--members", str(source_m), "--nonmembers", str(source_n),
                 "--out", str(tmp_path / "cli"), "--resolution", str(RES), "--prompt", "p",
                 "--no-flips", "--dry-run"]) == 0
