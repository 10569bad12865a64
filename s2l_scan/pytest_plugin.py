"""The pytest plugin (entry point ``pytest11``): ``pytest --s2l-model=PATH`` gates a release.

Kept cheap to import: loading this module must not import torch, diffusers, numpy or rich,
because pytest loads it in every test run of every project that has s2l-scan installed. The
engine is imported only when ``--s2l-model`` is given.

With ``--s2l-model``, one test item is collected per (attack, domain) plus ``pooled``, with ids
such as ``baselines::secmi[identity-3]``. The scan runs once, in the first item's setup; a
scan error is reported as an error of every item, a crossed threshold as a failure stating the
number, its CI, the threshold and n.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from s2l_scan.config import ScanConfig
    from s2l_scan.report.model import ScanReport
    from s2l_scan.session import ScanInputs

_STATE = pytest.StashKey["_ScanState"]()

# option name → ScanConfig field (values None = "not given", so config files still apply)
_CONFIG_OPTIONS = {
    "max_auc": (float, "gate: fail when AUC exceeds this (default 0.6)"),
    "max_tpr": (float, "gate: fail when calibrated TPR at 1% FPR exceeds this (default 0.1)"),
    "ci_end": (str, "which AUC meets max_auc: point (default), lower or upper CI end"),
    "attacks": (str, "comma-separated attacks (default loss,secmi,pia)"),
    "domains": (str, "comma-separated domains to scan (default all)"),
    "seed": (int, "seed of noises, splits and bootstrap (default 0)"),
    "bootstrap": (int, "bootstrap resamples (default 1000)"),
    "batch_size": (int, "samples per UNet forward (default 32)"),
    "threads": (int, "torch CPU threads (default 1)"),
    "device": (str, "torch device (default cpu)"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("s2l", "s2l-scan: diffusion-model privacy gate")
    group.addoption("--s2l-model", metavar="PATH", default=None,
                    help="checkpoint to scan: a diffusers folder, a .safetensors file (with "
                         "--s2l-model-config), or 'reference'")
    group.addoption("--s2l-data", metavar="DIR", default=None,
                    help="audit data (DIR/<domain>/{prompt.txt,members/,nonmembers/})")
    group.addoption("--s2l-model-config", metavar="DIR", default=None,
                    help="local diffusers config folder for a single-file checkpoint")
    group.addoption("--s2l-lora", metavar="DIR", default=None,
                    help="LoRA adapter folder fused into the model before scanning")
    group.addoption("--s2l-config", metavar="FILE", default=None,
                    help="s2l.toml or pyproject.toml with [tool.s2l] (default: found in rootdir)")
    group.addoption("--s2l-report-json", metavar="FILE", default=None,
                    help="write the JSON report here")
    group.addoption("--s2l-allow-pickle", action="store_true", default=None,
                    help="opt in to pickled weights (read with torch.load(weights_only=True))")
    for name, (kind, text) in _CONFIG_OPTIONS.items():
        group.addoption(f"--s2l-{name.replace('_', '-')}", type=kind, default=None, help=text)


class _ScanState:
    """Per-session state (kept in ``config.stash``, not module globals)."""

    def __init__(self, inputs: ScanInputs, config: ScanConfig, report_json: Path | None) -> None:
        self.inputs = inputs
        self.config = config
        self.report_json = report_json
        self.report: ScanReport | None = None
        self.error: BaseException | None = None

    def run(self) -> ScanReport:
        if self.report is None and self.error is None:
            from s2l_scan.session import run_scan

            try:
                self.report = run_scan(self.inputs, self.config)
            except Exception as error:
                self.error = error
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def pytest_configure(config: pytest.Config) -> None:
    model = config.getoption("--s2l-model")
    if model is None:
        return
    from s2l_scan.config import make_config, read_config_file
    from s2l_scan.errors import S2LError
    from s2l_scan.report.model import check_writable
    from s2l_scan.session import ScanInputs, validate_selection

    try:
        file_values = read_config_file(_opt_path(config, "--s2l-config"), config.rootpath)
        overrides = {name: config.getoption(f"--s2l-{name.replace('_', '-')}")
                     for name in _CONFIG_OPTIONS}
        overrides["allow_pickle"] = config.getoption("--s2l-allow-pickle")
        scan_config = make_config(file_values, **overrides)
        validate_selection(scan_config)
        report_json = _opt_path(config, "--s2l-report-json")
        if report_json is not None:
            check_writable(report_json)
    except S2LError as error:
        raise pytest.UsageError(f"s2l-scan: {error}") from None
    data = config.getoption("--s2l-data")
    if model != "reference" and data is None:
        raise pytest.UsageError("s2l-scan: --s2l-model needs --s2l-data=DIR (audit data with "
                                "DIR/<domain>/{prompt.txt,members/,nonmembers/})")
    inputs = ScanInputs(model=model, data=data,
                        model_config=config.getoption("--s2l-model-config"),
                        lora=config.getoption("--s2l-lora"))
    config.stash[_STATE] = _ScanState(inputs, scan_config, report_json)


def _opt_path(config: pytest.Config, name: str) -> Path | None:
    value = config.getoption(name)
    return None if value is None else Path(value)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    from s2l_scan.errors import S2LError

    try:
        domains = _domain_names(state)
    except S2LError as error:
        raise pytest.UsageError(f"s2l-scan: {error}") from None
    for attack in state.config.attacks:
        for domain in [*domains, *(["pooled"] if len(domains) > 1 else [])]:
            items.append(S2LItem.from_parent(session, name=f"baselines::{attack}[{domain}]",
                                             attack=attack, domain=domain))


def _domain_names(state: _ScanState) -> list[str]:
    from s2l_scan.io.audit_data import list_domains
    from s2l_scan.session import resolve_inputs

    _, data_dir = resolve_inputs(state.inputs, state.config)
    return list_domains(data_dir, state.config.domains)


class S2LItem(pytest.Item):
    """One gate check: an (attack, domain) result of the shared scan."""

    def __init__(self, *, attack: str, domain: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attack = attack
        self.domain = domain

    def _state(self) -> _ScanState:
        return self.config.stash[_STATE]

    def setup(self) -> None:
        self._state().run()  # an exception here is a scan *error*, not a gate failure

    def runtest(self) -> None:
        report = self._state().run()
        row = next(r for r in report.results
                   if r.attack == self.attack and r.domain == self.domain and r.probe is None)
        if not row.passed:
            raise GateFailure("; ".join(row.reasons))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        from s2l_scan.errors import S2LError

        if isinstance(excinfo.value, GateFailure | S2LError):
            return f"{self.name}: {excinfo.value}"
        return f"{self.name}: internal error in the scan: {excinfo.value!r}"

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "s2l-scan", None, self.name


class GateFailure(Exception):
    """A result crossed a threshold."""


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or state.report is None:
        return
    from s2l_scan.report.console import render_results

    terminalreporter.write_sep("=", "s2l-scan")
    terminalreporter.write(render_results(state.report, color=terminalreporter.hasmarkup))
    if state.report_json is not None:
        from s2l_scan.report.model import write_json_atomic

        write_json_atomic(state.report_json, state.report.to_dict())
        terminalreporter.write_line(f"s2l-scan: JSON report written to {state.report_json}")
