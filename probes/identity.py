"""The null probe: returns the copy untouched, so every Δ it yields measures Δ's own noise.

Never a default and never in the sweep: select it by name (``--probes identity``) to measure
the amplification check's false-fail rate (docs/null-audit.md). Its shaken copy is the released
model, scored on the same samples with the same seeds, so its ΔAUC is 0 and its amplification
checks can only fail when Δ's machinery is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext


@PROBES.register("identity")
@dataclass(frozen=True)
class IdentityProbe(Probe):
    """Leaves the model unchanged; nothing is trained or perturbed."""

    name: ClassVar[str] = "identity"
    uses: ClassVar[tuple[str, ...]] = ()

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        model.trainable_parameters = 0
        model.details = {"null_probe": True}
        return model
