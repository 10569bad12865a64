"""Checks: the one name every gate check carries, in one format, and the one shape of a judged
check (:class:`Check`: an id, an :class:`Outcome`, :class:`Reason` data).

A check is a result row (``baselines::secmi[identity-3]``, ``probes::noise/loss[pooled]``) or an
extraction record (``extraction::released[identity-3]``, ``extraction::lora[identity-3]``). The
plan lists them before the scan, the stages stamp them on what they produce, the gate, the
pytest items, the regression compare and every renderer read them; nothing else formats one.

>>> str(CheckId.probe("noise", "loss", "pooled"))
'probes::noise/loss[pooled]'
>>> CheckId.parse("extraction::released[identity-3]") == CheckId.extraction(None, "identity-3")
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

ROOMS = ("baselines", "probes", "extraction", "memorization")
RELEASED = "released"
"""The extraction source name of the model as released (a probe's copy is named by its label)."""

CALIBRATED = "+base"
"""Suffix of a base-calibrated attack's name: ``loss+base`` is loss on the model minus loss on
the base model (``--base-model``), so its checks read ``baselines::loss+base[identity-3]``."""


def calibrated(attack: str) -> str:
    """The name of ``attack``'s base-calibrated variant."""
    return attack + CALIBRATED


_PATTERN = re.compile(r"^(?P<room>[a-z]+)::(?P<name>.+)\[(?P<domain>[^\[\]]+)\]$")


@dataclass(frozen=True, order=True)
class CheckId:
    """``room::name[domain]``: which stage checked what, on which domain (or ``pooled``)."""

    room: str  # one of ROOMS
    name: str  # the attack; "probe/attack"; or the extraction source
    domain: str

    def __post_init__(self) -> None:
        if self.room not in ROOMS:
            raise ValueError(f"check room {self.room!r} is not one of {ROOMS}")

    def __str__(self) -> str:
        return f"{self.room}::{self.name}[{self.domain}]"

    @classmethod
    def row(cls, attack: str, probe: str | None, domain: str) -> CheckId:
        """The check of a result row: a baseline (``probe`` None) or a probe's re-attack."""
        if probe is None:
            return cls("baselines", attack, domain)
        return cls("probes", f"{probe}/{attack}", domain)

    @classmethod
    def baseline(cls, attack: str, domain: str) -> CheckId:
        return cls.row(attack, None, domain)

    @classmethod
    def probe(cls, label: str, attack: str, domain: str) -> CheckId:
        return cls.row(attack, label, domain)

    @classmethod
    def extraction(cls, probe: str | None, domain: str) -> CheckId:
        """The extraction check of the released model (``probe`` None) or a probe's copy."""
        return cls("extraction", probe or RELEASED, domain)

    @classmethod
    def memorization(cls, detector: str, domain: str) -> CheckId:
        """A prompt-level memorization check of one domain's prompts, e.g.
        ``memorization::wen[identity-3]`` (Wen et al.) or ``memorization::clique[...]``."""
        return cls("memorization", detector, domain)

    @classmethod
    def parse(cls, text: str) -> CheckId:
        """The id printed as ``text``; ValueError when it is not one."""
        match = _PATTERN.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a check id (room::name[domain])")
        return cls(match["room"], match["name"], match["domain"])


class Outcome(StrEnum):
    """What one check, or a whole scan, showed.

    ``failed``: a leak is shown (past its threshold, at the family-wise level). ``passed``:
    safety is shown (the check could have caught a leak of its threshold's size).
    ``inconclusive``: neither; its reasons say what would decide it.
    """

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


REASON_KINDS = ("auc", "tpr", "amplification", "extraction", "memorization", "regression",
                "dropped", "undecided", "legacy")
"""The kinds of :class:`Reason`; ``legacy``: a schema-2 report's reason string, read back."""


@dataclass(frozen=True)
class Reason:
    """Why a check failed or is inconclusive, as data: written by the gate, read by every
    renderer, the null audit and the compare (none of which parses ``text``).

    ``setting``: the configuration key it was judged against (``max_auc``); ``observed`` and
    ``threshold``: the numbers compared; ``decide_n``: for an inconclusive check, where known,
    the images per class that would decide it.

    >>> Reason.from_dict(Reason("auc", "max_auc", 0.9, 0.6, "AUC 0.9 > 0.6").to_dict()).kind
    'auc'
    """

    kind: str
    setting: str | None
    observed: float | None
    threshold: float | None
    text: str
    decide_n: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in REASON_KINDS:
            raise ValueError(f"reason kind {self.kind!r} is not one of {REASON_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "setting": self.setting, "observed": self.observed,
                "threshold": self.threshold, "text": self.text, "decide_n": self.decide_n}

    @classmethod
    def from_dict(cls, body: dict[str, Any] | str) -> Reason:
        """A reason from its JSON object; a schema-2 report's plain string becomes a
        ``legacy`` reason carrying that text."""
        if isinstance(body, str):
            return cls("legacy", None, None, None, body)
        return cls(str(body["kind"]), body.get("setting"), _number(body.get("observed")),
                   _number(body.get("threshold")), str(body.get("text", "")),
                   None if body.get("decide_n") is None else int(body["decide_n"]))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


@runtime_checkable
class Check(Protocol):
    """The one shape of every judged record (pytest's ``BaseReport``): a result row, an
    extraction record, a memorization record, a regression check.

    ``gating`` False: reported but not gated (a memorization record without a threshold);
    renderers show such a check as "reported", never as a pass."""

    @property
    def check_id(self) -> CheckId: ...

    @property
    def outcome(self) -> Outcome: ...

    @property
    def reasons(self) -> list[Reason]: ...

    @property
    def gating(self) -> bool: ...

    def properties(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """What JUnit and SARIF show of the check; ``config`` (the report's) adds the gate's
        thresholds."""
        ...


def combine(outcomes: Iterable[tuple[Outcome, bool]]) -> Outcome:
    """The outcome of several (outcome, gating) checks: FAILED if any fails, PASSED only if
    every gating one passes, INCONCLUSIVE otherwise. A non-gating check never fails nor
    blocks a pass; with no gating check at all nothing was shown: INCONCLUSIVE.

    >>> combine([(Outcome.PASSED, True), (Outcome.INCONCLUSIVE, False)])
    <Outcome.PASSED: 'passed'>
    """
    pairs = list(outcomes)
    if any(outcome is Outcome.FAILED for outcome, _ in pairs):
        return Outcome.FAILED
    gating = [outcome for outcome, gates in pairs if gates]
    if gating and all(outcome is Outcome.PASSED for outcome in gating):
        return Outcome.PASSED
    return Outcome.INCONCLUSIVE


AMPLIFICATION_SHARE = 0.2
"""The share of ``family_alpha`` spent on the amplification family (secondary); membership
gets the rest. Fixed whatever the scan runs, so adding a probe never changes a membership
decision, and the two families together keep the scan's false-fail rate ≤ ``family_alpha``
(Bonferroni over the two families). Read by the gate and by the report's power line."""


def membership_level(family_alpha: float) -> float:
    """The level of the membership (primary) family; ``family_alpha`` ≥ 1 asks no
    significance and is kept as it is.

    >>> membership_level(0.05) == 0.05 * 0.8
    True
    """
    return family_alpha if family_alpha >= 1.0 else family_alpha * (1.0 - AMPLIFICATION_SHARE)


def amplification_level(family_alpha: float) -> float:
    """The level of the amplification (secondary) family (``family_alpha`` ≥ 1: as it is)."""
    return family_alpha if family_alpha >= 1.0 else family_alpha * AMPLIFICATION_SHARE

