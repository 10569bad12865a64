"""Prompt-level memorization detectors, registered by name: what each measures, whose method it
is, the option that turns it on and the option of its gate threshold.

The one list the plan (check ids), the session (whether the stage runs), the gate (how a value
is compared), the regression compare (its metric) and the renderers (what a value means) read,
so a new detector is its pure function, its part of ``stages/memorization.py``, its two
options in ``config.py`` and one entry here. Stdlib only: the plan imports it before torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Detector:
    """One memorization detector, as the rest of the scan sees it."""

    name: str  # the check's method: memorization::NAME[domain]
    measures: str  # what a prompt's value is
    authors: str  # whose method
    switch: str  # the ScanConfig option that turns it on (0: off, the default)
    threshold: str  # the ScanConfig option of its gate threshold
    metric: str  # the regression compare's metric on its largest value
    strict: bool = True  # a prompt is flagged when value > threshold (False: value ≥ threshold)
    noun: str = "prompts"  # what a flagged prompt is called in the digest

    def flags(self, value: float, threshold: float) -> bool:
        """The per-prompt verdict: the value past the threshold."""
        return value > threshold if self.strict else value >= threshold

    def enabled(self, config: Any) -> bool:
        """Whether ``config`` (a ScanConfig, or a report's config dict) turns it on."""
        value = config.get(self.switch) if isinstance(config, dict) else getattr(
            config, self.switch)
        return bool(value)


DETECTORS: dict[str, Detector] = {}
"""Every detector by name, in report order."""


def register_detector(detector: Detector) -> Detector:
    """Add ``detector``; a second detector of the same name is refused."""
    if detector.name in DETECTORS and DETECTORS[detector.name] != detector:
        raise ValueError(f"memorization detector {detector.name!r} is already registered; "
                         f"known: {sorted(DETECTORS)}")
    DETECTORS[detector.name] = detector
    return detector


def enabled_detectors(config: Any) -> list[Detector]:
    """The detectors ``config`` turns on, in report order."""
    return [detector for detector in DETECTORS.values() if detector.enabled(config)]


register_detector(Detector("wen", "text-guidance magnitude", "Wen et al.",
                           "memorization_starts", "max_text_guidance", "text_guidance"))
register_detector(Detector("anisotropy", "log-probability anisotropy score",
                           "Asthana & Belagiannis", "anisotropy_starts", "max_anisotropy",
                           "anisotropy"))
register_detector(Detector("clique", "clique of near-copy generations", "Carlini et al.",
                           "clique_generations", "clique_size", "clique", strict=False,
                           noun="cliques"))
