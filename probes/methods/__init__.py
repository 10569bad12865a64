"""The fine-tuning probes of S2L (README, probes), one method per file.

Importing this package registers each of them in :data:`s2l_scan.probe.PROBES`. Every method
only chooses what trains and calls the shared loop, :func:`s2l_scan.finetune.train`.
"""

from s2l_scan.probes.methods import (
    dreambooth,
    dreambooth_hypernetwork,
    dreambooth_lora,
    end_to_end,
    end_to_end_ood,
    hypernetwork,
    lora,
    textual_inversion,
    textual_inversion_lora,
)

__all__ = [
    "dreambooth",
    "dreambooth_hypernetwork",
    "dreambooth_lora",
    "end_to_end",
    "end_to_end_ood",
    "hypernetwork",
    "lora",
    "textual_inversion",
    "textual_inversion_lora",
]
