"""What leaked, in a few lines: the digest every renderer prints first.

Pure functions of a :class:`ScanReport` (no I/O, no rich): the console, the HTML page and the
Markdown summary read the same :class:`Digest`, so the three can never disagree on what the
worst attack of a domain was, which training images were extracted, or which probe amplified
the most.

>>> from s2l_scan.report.digest import short_reason
>>> short_reason("calibrated AUC 0.895 > max_auc 0.6 (AUC 0.895, 95% CI [0.8, 0.9], n = 48)")
'calibrated AUC 0.895 > max_auc 0.6'
"""

from __future__ import annotations

from dataclasses import dataclass

from s2l_scan import detectors
from s2l_scan.report.headline import (
    decide_n,
    headline,
    policy_warning,
    undecided_reasons,
    verdict_sentence,
    verdict_word,
)
from s2l_scan.report.model import MemorizationRecord, ResultRow, ScanReport
from s2l_scan.report.remedies import CONFOUNDED_MEANING

ROOM_TITLES = {"baselines": "baselines (the released model)",
               "probes": "probes (a shaken copy, re-attacked; Δ against the released model)",
               "extraction": "extraction (generations matched to known training images)",
               "memorization": "memorization (prompts whose generations look memorized, found "
                               "with no known image)"}
"""Each group of checks, in report order, with what it measures."""


@dataclass(frozen=True)
class Worst:
    """The strongest attack on one domain (or ``pooled``), over baselines and probes."""

    domain: str
    check_id: str
    auc: float
    auc_ci: tuple[float, float]
    verdict: str  # the row's verdict word: pass, FAIL, INCONCLUSIVE (headline.verdict_word)


@dataclass(frozen=True)
class Extracted:
    """One known training image that some generation reproduced ((k, ℓ2, δ)-eidetic)."""

    image: str  # the known image's path, as the report names it
    check_ids: tuple[str, ...]  # every extraction check that found it, in report order
    distance: float  # the closest generation's RMS distance (pixels in [0, 1])
    generations: int  # generations matched to it, over all those checks


@dataclass(frozen=True)
class Amplification:
    """The probe row whose calibrated AUC rose most over the released model's."""

    check_id: str
    delta: float
    delta_ci: tuple[float, float] | None
    auc: float
    max_amplification: float | None  # the gate's threshold for Δ, from the report's config


DETECTORS = {d.name: (d.measures, d.authors) for d in detectors.DETECTORS.values()}
"""Each memorization detector: what its value measures, and whose method it is."""


@dataclass(frozen=True)
class Memorized:
    """One prompt's memorization value, as one detector measured it on one domain."""

    check_id: str
    prompt: str
    value: float  # the text-guidance magnitude, or the clique size
    flagged: bool  # the gate's per-prompt verdict (False when not gated)
    evidence: str | None  # the clique's picture, when saved


@dataclass(frozen=True)
class Memorization:
    """One detector over every domain: its threshold, the prompt with the largest value, and
    the prompts the gate flagged (largest first)."""

    detector: str  # a name of s2l_scan.detectors: "wen" | "anisotropy" | "clique"
    threshold: float | None  # None: reported, not gated
    prompts: int
    largest: Memorized | None  # None: no prompt probed
    flagged: tuple[Memorized, ...]


@dataclass(frozen=True)
class Digest:
    """The verdict and what leaked, most telling first."""

    outcome: str  # passed | failed | inconclusive
    verdict: str  # the verdict sentence (headline.verdict_sentence)
    checks: int  # as the headline counts them: dropped checks of a compared report included
    failed: int
    worst: tuple[Worst, ...]  # one per domain, then pooled, in report order
    extracted: tuple[Extracted, ...]  # by closest distance first
    amplification: Amplification | None  # None: no probe row with a Δ
    flags: dict[str, int]  # flag name → rows carrying it (only flags that occur)
    memorization: tuple[Memorization, ...] = ()  # one per detector that ran
    # an inconclusive verdict's top reasons, "check id: reason", and the images per class
    # that would decide it (None: unknown)
    undecided: tuple[str, ...] = ()
    decide_n: int | None = None
    warning: str | None = None  # on_inconclusive = warn: why the run still exits 0

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


FLAGS = ("confounded", "unstable", "underpowered")


def what_leaked(report: ScanReport) -> Digest:
    """The :class:`Digest` of ``report``."""
    worst: dict[str, ResultRow] = {}
    for row in report.results:
        if row.domain not in worst or row.auc > worst[row.domain].auc:
            worst[row.domain] = row
    order = [*(d for d in worst if d != "pooled"), *(["pooled"] if "pooled" in worst else [])]
    images: dict[str, tuple[list[str], float, int]] = {}
    for record in report.extraction:
        for match in record.matches:
            known = str(match["known"])
            ids, distance, count = images.get(known, ([], float("inf"), 0))
            if record.item_id not in ids:
                ids.append(record.item_id)
            images[known] = (ids, min(distance, float(match["distance"])), count + 1)
    extracted = sorted((Extracted(image, tuple(ids), distance, count)
                        for image, (ids, distance, count) in images.items()),
                       key=lambda e: (e.distance, e.image))
    probes = [row for row in report.results if row.delta_auc is not None]
    top = max(probes, key=lambda row: float(row.delta_auc or 0.0), default=None)
    amplification = None if top is None or top.delta_auc is None else Amplification(
        top.item_id, top.delta_auc, top.delta_auc_ci, top.auc,
        report.config.get("max_amplification"))
    flags = {flag: sum(bool(getattr(row, flag)) for row in report.results) for flag in FLAGS}
    return Digest(
        outcome=str(report.outcome), verdict=verdict_sentence(report),
        checks=int(headline(report)["checks"]), failed=len(report.failed_items),
        worst=tuple(Worst(d, worst[d].item_id, worst[d].auc, worst[d].auc_ci,
                          verdict_word(worst[d])) for d in order),
        extracted=tuple(extracted), amplification=amplification,
        flags={flag: count for flag, count in flags.items() if count},
        memorization=memorization_digest(report.memorization),
        undecided=tuple(f"{item}: {short_reason(reason.text)}"
                        for item, reason in undecided_reasons(report)),
        decide_n=decide_n(report), warning=policy_warning(report))


def memorization_digest(records: list[MemorizationRecord]) -> tuple[Memorization, ...]:
    """Per detector, in report order: the largest value and the flagged prompts."""
    detectors = dict.fromkeys(record.detector for record in records)
    out = []
    for detector in detectors:
        mine = [record for record in records if record.detector == detector]
        values = [Memorized(record.item_id, str(prompt["prompt"]), float(prompt["value"]),
                            bool(prompt.get("flagged")), prompt.get("evidence"))
                  for record in mine for prompt in record.prompts]
        ranked = sorted(values, key=lambda m: -m.value)
        out.append(Memorization(detector, mine[0].threshold, len(values),
                                ranked[0] if ranked else None,
                                tuple(m for m in ranked if m.flagged)))
    return tuple(out)


def memorization_lines(memorization: Memorization, max_prompts: int = 5) -> list[str]:
    """One detector's digest as sentences: the flagged prompts, or the largest value and
    whether it was gated."""
    what, whose = DETECTORS.get(memorization.detector, (memorization.detector, ""))
    detector = detectors.DETECTORS[memorization.detector]
    threshold = memorization.threshold
    limit = ("reported, not gated" if threshold is None else
             f"{'>' if detector.strict else '≥'} {_number(threshold)}")
    if memorization.flagged:
        noun = detector.noun
        lines = [f"likely memorized {noun} ({whose} {what} {limit}): "
                 f"{len(memorization.flagged)} of {memorization.prompts} prompts"]
        for item in memorization.flagged[:max_prompts]:
            picture = f"; pictured in {item.evidence}" if item.evidence else ""
            lines.append(f"  {item.prompt!r}: {_number(item.value)} ({item.check_id}{picture})")
        if len(memorization.flagged) > max_prompts:
            lines.append(f"  … {len(memorization.flagged) - max_prompts} more in the JSON report")
        return lines
    largest = memorization.largest
    if largest is None:
        return [f"{what} ({whose}): no prompt probed"]
    verdict = "no prompt flagged" if threshold is not None else "reported, not gated"
    return [f"{what} ({whose}): {verdict}; largest {_number(largest.value)} on "
            f"{largest.prompt!r} ({largest.check_id}) of {memorization.prompts} prompts"
            + ("" if threshold is None else f", threshold {limit}")]


def _number(value: float) -> str:
    return f"{value:.4g}"


def digest_lines(digest: Digest, max_images: int = 5) -> list[str]:
    """The digest as plain sentences, one per line (console, Markdown)."""
    lines = [f"verdict {digest.verdict}"]
    if digest.outcome == "inconclusive":
        lines += [f"  undecided: {line}" for line in digest.undecided]
        if digest.decide_n is not None:
            lines.append(f"  about {digest.decide_n} members and {digest.decide_n} non-members "
                         "per domain would decide it")
    if digest.warning is not None:
        lines.append(digest.warning)
    for worst in digest.worst:
        low, high = worst.auc_ci
        lines.append(f"worst attack on {worst.domain}: {worst.check_id} AUC {worst.auc:.3f} "
                     f"[{low:.2f}, {high:.2f}] ({worst.verdict})")
    if digest.extracted:
        lines.append(f"training images extracted: {len(digest.extracted)}")
        for image in digest.extracted[:max_images]:
            lines.append(f"  {image.image} (RMS {image.distance:.4f}, {image.generations} "
                         f"generation{'' if image.generations == 1 else 's'}; "
                         f"{', '.join(image.check_ids)})")
        if len(digest.extracted) > max_images:
            lines.append(f"  … {len(digest.extracted) - max_images} more in the JSON report")
    amplification = digest.amplification
    if amplification is not None:
        ci = ("" if amplification.delta_ci is None else
              f" [{amplification.delta_ci[0]:+.2f}, {amplification.delta_ci[1]:+.2f}]")
        lines.append(f"largest amplification: {amplification.check_id} ΔAUC "
                     f"{amplification.delta:+.3f}{ci} to AUC {amplification.auc:.3f} "
                     f"(max_amplification {amplification.max_amplification})")
    for memorization in digest.memorization:
        lines += memorization_lines(memorization, max_images)
    return lines


def short_reason(reason: str) -> str:
    """A gate reason without its parenthesised details: what crossed which threshold, in one
    line (the full reason is in the JSON, HTML and Markdown reports)."""
    out: list[str] = []
    depth = 0
    for index, char in enumerate(reason):
        if char == "(" and (depth or index == 0 or reason[index - 1].isspace()):
            depth += 1  # a parenthesised aside; "image(s)" is a word and stays
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(char)
    return " ".join("".join(out).split()).replace(" ;", ";")


def flag_meanings() -> dict[str, str]:
    """What each row flag means, one sentence each (the legend under a results table)."""
    return {
        "confounded": CONFOUNDED_MEANING.removeprefix("Confounded: "),
        "unstable": "the two calibration halves learned a different score direction or "
                    "variant (e.g. SecMI's compared timestep); the AUC is less certain than "
                    "its CI says.",
        "underpowered": "too few samples for this check ever to be significant at "
                        "family_alpha, however strong the signal; its pass is no evidence of "
                        "safety: add members and non-members.",
    }
