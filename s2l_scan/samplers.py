"""The samplers extraction and SP-set generation can use, by name (``ScanConfig.sampler``).

``model`` keeps the pipeline's own scheduler (DDIM for the reference model, PNDM for an SD-1.5
release); any other name swaps in that diffusers scheduler, built from the model's scheduler
config (so its noise schedule and prediction type are kept), for the generations alone.

Cheap to import (config validation reads :data:`SAMPLERS`): diffusers is imported only when a
scheduler is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampler:
    """One named sampler: a diffusers scheduler class and the config overrides that make it."""

    help: str
    scheduler: str | None  # diffusers class name; None: the model's own scheduler
    overrides: dict[str, Any] = field(default_factory=dict)


SAMPLERS: dict[str, Sampler] = {
    "model": Sampler("the model's own scheduler (its scheduler_config.json)", None),
    "ddim": Sampler("DDIM (η = 0), deterministic", "DDIMScheduler"),
    "dpmsolver++": Sampler("DPM-Solver++ (2nd order multistep): about 20 steps match DDIM's 50",
                           "DPMSolverMultistepScheduler",
                           {"algorithm_type": "dpmsolver++", "solver_order": 2}),
}


def check_sampler(name: object) -> None:
    """A usage error naming the choices unless ``name`` is a registered sampler."""
    if not isinstance(name, str) or name not in SAMPLERS:
        from s2l_scan.errors import UsageError

        choices = ", ".join(f"{key} ({value.help})" for key, value in SAMPLERS.items())
        raise UsageError(f"sampler must be one of: {choices}; got {name!r}")


def make_scheduler(name: str, model_scheduler: Any) -> Any:
    """The scheduler sampler ``name`` uses on a pipeline whose own scheduler is
    ``model_scheduler``: that one itself for ``model``, else a new one from its config."""
    check_sampler(name)
    sampler = SAMPLERS[name]
    if sampler.scheduler is None:
        return model_scheduler
    import diffusers

    cls = getattr(diffusers, sampler.scheduler)
    return cls.from_config(model_scheduler.config, **sampler.overrides)


def sampler_class(name: str, model_scheduler: Any) -> str:
    """The scheduler class name sampler ``name`` runs with on this model (for the report)."""
    sampler = SAMPLERS[name]
    return type(model_scheduler).__name__ if sampler.scheduler is None else sampler.scheduler


def sampler_identity(name: str, model_scheduler: Any) -> str:
    """What generations depend on besides the steps and guidance, for unit keys: the scheduler
    class sampler ``name`` runs, and a digest of the model's scheduler config it is built from
    (for ``model`` that config is the sampler itself; another one inherits its noise schedule
    and prediction type)."""
    import hashlib
    import json

    config = json.dumps(dict(model_scheduler.config), sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode()).hexdigest()[:16]
    return f"{sampler_class(name, model_scheduler)}:{digest}"
