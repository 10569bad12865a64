"""Which S2L probes a scan runs: the selected probes with concrete options, and the sweep's
candidates (:mod:`s2l_scan.sweep`), each with the label its checks carry.

Built once, into the scan plan, before any model work: a bad probe name or option is a usage
error here. :mod:`s2l_scan.stages.probes` runs them.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from s2l_scan.config import ScanConfig
from s2l_scan.errors import UsageError
from s2l_scan.probe import PROBES, Probe


@dataclass(frozen=True)
class ProbeSpec:
    """One probe with concrete options, and the label its report rows carry."""

    label: str
    probe: Probe


@dataclass(frozen=True)
class ProbeSelection:
    """The probes a scan runs: ``planned`` (each a check known before the scan), then the
    ``sweep`` candidates while ``sweep_budget_s`` lasts (known only at run time)."""

    planned: tuple[ProbeSpec, ...] = ()
    sweep: tuple[ProbeSpec, ...] = ()
    sweep_budget_s: float | None = None  # None: no sweep
    unsupported: tuple[str, ...] = ()  # sweep candidates left out: not for this model family

    def for_family(self, family: str) -> ProbeSelection:
        """This selection for a model of ``family``: a planned probe that cannot shake it is
        a usage error naming the probe and the family; sweep candidates that cannot are left
        out, and named in :attr:`unsupported` (the report's sweep summary lists them)."""
        for spec in self.planned:
            spec.probe.check_family(family)
        keep = tuple(spec for spec in self.sweep if family in spec.probe.families)
        left_out = tuple(spec.label for spec in self.sweep if spec not in keep)
        return dataclasses.replace(self, sweep=keep, unsupported=self.unsupported + left_out)


def select_probes(config: ScanConfig) -> ProbeSelection:
    """The planned probes and, with ``sweep`` set, the sweep's candidates and budget."""
    from s2l_scan.sweep import parse_budget

    if config.sweep is None:
        return ProbeSelection(tuple(expand_probes(config)))
    return ProbeSelection(tuple(expand_probes(config)),
                          tuple(spec for _, spec in sweep_specs(config)),
                          parse_budget(config.sweep))


def expand_probes(config: ScanConfig) -> list[ProbeSpec]:
    """Instantiate the selected probes; list-valued options sweep (one spec per combination)."""
    import s2l_scan.probes  # noqa: F401 - registers the built-in probes

    specs = []
    for name in config.probes:
        cls = PROBES.get(name)
        options = config.probe_options.get(name, {})
        swept = {k: v if isinstance(v, list) else [v] for k, v in options.items()}
        for values in itertools.product(*swept.values()):
            chosen = dict(zip(swept, values, strict=True))
            try:
                probe = _build(cls, chosen)
            except (TypeError, ValueError) as error:
                raise UsageError(f"probe {name!r}: bad options {chosen} ({error})") from None
            shown = ",".join(f"{k}={v}" for k, v in chosen.items()
                             if isinstance(options.get(k), list))
            specs.append(ProbeSpec(f"{name}({shown})" if shown else name, probe))
    return specs


def _build(cls: type[Probe], options: dict[str, Any]) -> Probe:
    """A probe with these options. Probes check their options when built (and described): a
    TypeError or ValueError here is a bad name or value in the user's options."""
    probe = cls(**options)
    probe.describe()
    return probe


def sweep_specs(config: ScanConfig) -> list[tuple[str, ProbeSpec]]:
    """The sweep's candidate probes (see :mod:`s2l_scan.sweep`), labelled ``sweep:NAME(k=v)``.

    Each candidate starts from the probe's ``probe_options`` (when the scan sets any scalar
    ones) and changes one knob."""
    import s2l_scan.probes  # noqa: F401 - registers the built-in probes
    from s2l_scan.sweep import candidates

    specs = []
    for name, change in candidates(config.sweep_space):
        cls = PROBES.get(name)
        base = {k: v for k, v in config.probe_options.get(name, {}).items()
                if not isinstance(v, list)}
        try:
            probe = _build(cls, {**base, **change})
        except (TypeError, ValueError) as error:
            raise UsageError(f"sweep_space: probe {name!r} has no knob or value {change} "
                             f"({error}); its knobs: {sorted(probe_knobs(cls))}") from None
        label = "sweep:" + name + "(" + ",".join(f"{k}={v}" for k, v in change.items()) + ")"
        specs.append((label, ProbeSpec(label, probe)))
    return specs


def probe_knobs(cls: type[Probe]) -> list[str]:
    """The constructor options of a probe class (its dataclass fields)."""
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
