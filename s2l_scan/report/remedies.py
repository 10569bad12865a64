"""What to do next, per kind of check: the docs page, what it measured, what a releaser can do.

One table, :data:`REMEDIES`, read by the console digest, the HTML page and the SARIF rules'
``help`` / ``helpUri``, so a failed check points at the same advice wherever it is read. Each
kind has a page under ``docs/checks/`` that says more (what was measured, why it fails, what
to change); the advice here is its one-line summary.

Pure: functions of a :class:`~s2l_scan.report.model.ScanReport`, no I/O.

>>> check_kind("probes::noise/loss[identity-3]")
'amplification'
>>> check_kind("extraction::released[main]")
'extraction'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s2l_scan.checks import Outcome
from s2l_scan.report.model import ScanReport

DOCS_URL = "https://github.com/s2l-scan/s2l-scan/blob/main/docs/checks/"
"""Where the per-kind pages live online (SARIF ``helpUri``); ``docs/checks/`` in the source."""

CONFOUNDED_MEANING = (
    "Confounded: a classifier that never sees the model already tells these members from "
    "these non-members (blind AUC significantly above 0.5, and at least half as far above "
    "0.5 as the attack is from it), so this row's AUC may measure how the two image sets "
    "differ rather than what the model memorised; audit with member and non-member sets drawn "
    "alike.")
"""One sentence the report can print beside a confounded row (the rule itself:
:func:`s2l_scan.baselines.blind.confounded`; kept here, with no import of the attacks, so that
rendering a saved report never imports torch)."""


@dataclass(frozen=True)
class Remedy:
    """The advice for one kind of check."""

    kind: str  # membership | amplification | extraction | memorization | regression
    title: str
    measured: str  # one sentence: what the check measured
    steps: tuple[str, ...]  # what a releaser can do, most effective first

    @property
    def page(self) -> str:
        """The docs page, relative to the repository root."""
        return f"docs/checks/{self.kind}.md"

    @property
    def url(self) -> str:
        return f"{DOCS_URL}{self.kind}.md"

    def markdown(self) -> str:
        """The SARIF rule's ``help.markdown``: what it measured, then what to do."""
        steps = "\n".join(f"- {step}" for step in self.steps)
        return (f"**{self.title}.** {self.measured}\n\n**What you can do**\n\n{steps}\n\n"
                f"More: [{self.page}]({self.url})")


_FEWER_STEPS = "train for fewer steps or at a lower learning rate (memorization grows with both)"
_DEDUP = "deduplicate the training set (near-copies are memorized first: `s2l-scan data build` " \
         "reports them)"
_DP = "train with differential privacy (DP-SGD / DP-LoRA) where the utility cost is acceptable"
_MORE = "if the verdict is borderline, rescan with more audit images per domain: the CI narrows " \
        "as 1/sqrt(n)"

REMEDIES: dict[str, Remedy] = {r.kind: r for r in (
    Remedy("membership", "Membership inference on the released model",
           "An attack told training members from held-out images of the same domain (its "
           "calibrated AUC, or TPR at 1% FPR) better than the gate allows.",
           (_DEDUP, _FEWER_STEPS, _DP,
            "check the held-out set is of the same kind (the blind AUC column): a shifted "
            "set fails for the wrong reason", _MORE)),
    Remedy("amplification", "Leakage amplified by a Shake-to-Leak probe",
           "After a probe shook a copy of the model (noise, or a short fine-tune on its own "
           "generations), the same attack did better than on the release by more than "
           "max_amplification: an attacker who fine-tunes the release recovers more.",
           (_FEWER_STEPS, _DEDUP, _DP,
            "confirm with a fixed-configuration run if the failing row came from --sweep "
            "(the maximum over many settings is biased upwards)", _MORE)),
    Remedy("extraction", "Training images extracted from generations",
           "Images generated from a domain's prompt reproduced known training images "
           "((k, l2, delta)-eidetic: a generation within RMS delta of the image, and the "
           "image not one of many near-copies).",
           ("drop the extracted images (the report names them) from the training set, or "
            "re-caption them so that no prompt names them alone, and retrain",
            _DEDUP, _FEWER_STEPS, _DP,
            "look at the evidence (--evidence-dir) before deciding: a match to a near-"
            "duplicate of a public image may be acceptable")),
    Remedy("memorization", "Memorized prompts, found without known images",
           "A prompt's generations were near-copies of one another (clique), or its text "
           "guidance was abnormally strong (Wen et al.): likely memorized.",
           ("find the training images behind the flagged prompts (the report lists them) and "
            "deduplicate or re-caption them", _FEWER_STEPS,
            "calibrate max_text_guidance on prompts known not to be memorized before gating "
            "on it")),
    Remedy("regression", "Privacy regressed since the previous release",
           "A check's AUC, TPR or extraction count rose by more than compare_fail allows "
           "since the previous release's report, or a check of that report was not run.",
           ("compare the two reports' configuration changes (`config_changes`): a changed "
            "audit or attack setting moves numbers without a model change",
            "look for what changed in training since the previous release (more steps, new "
            "data, duplicates)", "rerun the dropped checks, or pass --allow-dropped-checks "
            "when dropping them is intended")),
)}

_PREFIXES = {"baselines": "membership", "probes": "amplification", "extraction": "extraction",
             "memorization": "memorization"}


def check_kind(check_id: str) -> str:
    """The kind of a check id (``baselines::...`` → ``membership``); unknown: regression."""
    return _PREFIXES.get(check_id.split("::", 1)[0], "regression")


_REASON_KINDS = {"auc": "membership", "tpr": "membership", "amplification": "amplification",
                 "extraction": "extraction", "memorization": "memorization",
                 "regression": "regression", "dropped": "regression"}
"""The remedy of each kind of failing reason: a probe row that fails on its AUC leaks as a
membership check does (the shaken copy still separates members); only a shown Δ is
amplification."""


def failed_kinds(report: ScanReport) -> dict[str, int]:
    """Failed checks per kind of failing reason, in :data:`REMEDIES` order (a check failing
    for two kinds counts under both; a regression also counts apart)."""
    counts: dict[str, int] = {}
    records: list[Any] = [*report.results, *report.extraction, *report.memorization]
    for record in records:
        if record.outcome is not Outcome.FAILED:
            continue
        kinds = {_REASON_KINDS[r.kind] for r in record.reasons if r.kind in _REASON_KINDS}
        for kind in kinds or {check_kind(str(record.check_id))}:
            counts[kind] = counts.get(kind, 0) + 1
    regressed = sum(1 for check in report.comparison if not check.passed)
    if regressed and "regression" not in counts:
        counts["regression"] = regressed
    return {kind: counts[kind] for kind in REMEDIES if kind in counts}


def next_steps(report: ScanReport) -> list[str]:
    """One line per kind of failed check: how many, the first thing to try, the docs page.
    Empty for a passing scan."""
    lines = []
    for kind, count in failed_kinds(report).items():
        remedy = REMEDIES[kind]
        lines.append(f"{remedy.title} ({count} failed): {remedy.steps[0]}; more in "
                     f"{remedy.page}")
    return lines
