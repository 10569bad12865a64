"""Fine-tuning for the S2L probes: one shared training loop (:mod:`.loop`).

The methods themselves (LoRA, textual inversion, DreamBooth, ...) live one per file in
``probes/methods/`` and only choose what trains before calling :func:`train`.
"""

from s2l_scan.finetune.loop import check_budget, count_parameters, train

__all__ = ["check_budget", "count_parameters", "train"]
