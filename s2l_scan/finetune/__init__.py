"""Fine-tuning for the S2L probes: one shared training loop (:mod:`.loop`).

The methods themselves (LoRA, textual inversion, DreamBooth, ...) live one per file in
``probes/methods/`` and only choose what trains before calling :func:`train` with a
:class:`ModelCopy`, its :class:`TrainingData` and a :class:`TrainConfig`.
"""

from s2l_scan.finetune.loop import (
    ParamGroups,
    TrainConfig,
    TrainingData,
    check_budget,
    count_parameters,
    train,
)

__all__ = ["ParamGroups", "TrainConfig", "TrainingData", "check_budget", "count_parameters",
           "train"]
