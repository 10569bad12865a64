"""Check ids: the one name every gate check carries, in one format.

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
from dataclasses import dataclass

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
