"""The pytest plugin (entry point ``pytest11``): ``pytest --s2l-model=PATH`` gates a release.

Kept cheap to import: loading this module must not import torch, diffusers, numpy or rich,
because pytest loads it in every test run of every project that has s2l-scan installed. The
engine is imported only when ``--s2l-model`` is given.

With ``--s2l-model``, one test item is collected per (attack, domain) plus ``pooled``, with ids
such as ``baselines::secmi[identity-3]``, the same again per probe setting
(``probes::noise/secmi[identity-3]``), and one per domain for extraction
(``extraction::released[identity-3]``). The scan runs once, in the first item's setup; a scan
error is reported as an error of every item, a crossed threshold or a regression against
``--s2l-compare`` as a failure stating the numbers, the CI, the threshold and n. Report files
(``--s2l-report-*``, ``--s2l-sarif``) are written when the session ends, and the headline
numbers become ``<testsuite>`` properties of ``--junitxml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# cheap modules (no torch, numpy or rich): they keep the plugin cheap to load
from s2l_scan.options import SCAN_INPUTS, argparse_help, plugin_spelling, scan_options

if TYPE_CHECKING:
    from s2l_scan.config import ScanConfig
    from s2l_scan.report.gate import ReportPlan
    from s2l_scan.report.model import ScanReport
    from s2l_scan.session import ScanInputs

_STATE = pytest.StashKey["_ScanState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("s2l", "s2l-scan: diffusion-model privacy gate")
    for given in SCAN_INPUTS:
        group.addoption(plugin_spelling(given.name), metavar=given.metavar, default=None,
                        help=argparse_help(given.help))
    for option in scan_options():  # values None: "not given", so config files still apply
        if option.type is bool:
            group.addoption(option.pytest, action="store_true", default=None,
                            help=argparse_help(option.help))
        else:
            group.addoption(option.pytest, type=option.type, default=None,
                            metavar=option.metavar, help=argparse_help(option.help))


class _ScanState:
    """Per-session state (kept in ``config.stash``, not module globals)."""

    def __init__(self, inputs: ScanInputs, config: ScanConfig, plan: ReportPlan) -> None:
        self.inputs = inputs
        self.config = config
        self.plan = plan
        self.report: ScanReport | None = None
        self.error: BaseException | None = None
        self.written: list[tuple[str, Path]] = []
        self.write_error: str | None = None

    def run(self) -> ScanReport:
        if self.report is None and self.error is None:
            from s2l_scan.session import run_scan

            try:
                report = run_scan(self.inputs, self.config)
                self.plan.apply(report)
                self.report = report
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
    from s2l_scan.report.gate import plan_reports
    from s2l_scan.session import ScanInputs, validate_selection

    try:
        config_file = _opt_path(config, "--s2l-config")
        file_values = read_config_file(config_file, config.rootpath)
        overrides = {option.key: config.getoption(option.pytest) for option in scan_options()}
        scan_config = make_config(file_values, **overrides)
        validate_selection(scan_config)
        plan = plan_reports(scan_config, inputs=[config_file] if config_file else [])
    except S2LError as error:
        raise pytest.UsageError(f"s2l-scan: {error}") from None
    data = config.getoption("--s2l-data")
    if model != "reference" and data is None:
        raise pytest.UsageError("s2l-scan: --s2l-model needs --s2l-data=DIR (audit data with "
                                "DIR/<domain>/{prompt.txt,members/,nonmembers/})")
    inputs = ScanInputs(model=model, data=data,
                        model_config=config.getoption("--s2l-model-config"),
                        lora=config.getoption("--s2l-lora"))
    config.stash[_STATE] = _ScanState(inputs, scan_config, plan)


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
        probes = _probe_labels(state.config)
    except S2LError as error:
        raise pytest.UsageError(f"s2l-scan: {error}") from None
    checked = [*domains, *(["pooled"] if len(domains) > 1 else [])]
    for attack in state.config.attacks:
        for domain in checked:
            items.append(S2LItem.from_parent(session, name=f"baselines::{attack}[{domain}]"))
    for probe in probes:
        for attack in state.config.attacks:
            for domain in checked:
                items.append(S2LItem.from_parent(
                    session, name=f"probes::{probe}/{attack}[{domain}]"))
    if state.config.extraction_samples:
        for probe_label in [None, *(probes if state.config.extraction_on_probes else [])]:
            for domain in domains:
                items.append(ExtractionItem.from_parent(
                    session, name=f"extraction::{probe_label or 'released'}[{domain}]",
                    domain=domain, probe=probe_label))


def _probe_labels(config: ScanConfig) -> list[str]:
    """One label per probe setting the scan will run (a swept option gives several)."""
    if not config.probes:
        return []
    from s2l_scan.probing import expand_probes

    return [spec.label for spec in expand_probes(config)]


def _domain_names(state: _ScanState) -> list[str]:
    from s2l_scan.io.audit_data import list_domains
    from s2l_scan.session import resolve_inputs

    _, data_dir = resolve_inputs(state.inputs, state.config)
    return list_domains(data_dir, state.config.domains)


class _GateItem(pytest.Item):
    """A check of the shared scan; the scan runs in the first item's setup."""

    def _state(self) -> _ScanState:
        return self.config.stash[_STATE]

    def setup(self) -> None:
        self._state().run()  # an exception here is a scan *error*, not a gate failure

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        from s2l_scan.errors import S2LError

        if isinstance(excinfo.value, GateFailure | S2LError):
            return f"{self.name}: {excinfo.value}"
        return f"{self.name}: internal error in the scan: {excinfo.value!r}"

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "s2l-scan", None, self.name


class S2LItem(_GateItem):
    """One gate check: the result row of the shared scan whose ``item_id`` is this item's name,
    e.g. ``baselines::secmi[identity-3]`` or ``probes::noise/loss[pooled]``."""

    def runtest(self) -> None:
        report = self._state().run()
        row = next((r for r in report.results if r.item_id == self.name), None)
        if row is None:  # collected but not measured: never a silent pass
            raise GateFailure("the scan report has no result for this check; results: "
                              + ", ".join(r.item_id for r in report.results))
        # shown as <properties> of this <testcase> in --junitxml
        self.user_properties += [("auc", f"{row.auc:.6g}"),
                                 ("auc_ci", f"{row.auc_ci[0]:.6g},{row.auc_ci[1]:.6g}"),
                                 ("tpr_at_1pct_fpr", f"{row.tpr_at_1pct_fpr:.6g}"),
                                 ("blind_auc", f"{row.blind_auc:.6g}")]
        if not row.passed:
            raise GateFailure("; ".join(row.reasons))


class ExtractionItem(_GateItem):
    """One extraction check: eidetic matches of the released model (or a probe's copy) for one
    domain."""

    def __init__(self, *, domain: str, probe: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.domain = domain
        self.probe = probe

    def runtest(self) -> None:
        report = self._state().run()
        record = next((r for r in report.extraction
                       if r.get("probe") == self.probe and r.get("domain") == self.domain), None)
        if record is None:  # collected but not measured: never a silent pass
            raise GateFailure(f"the scan report has no extraction record for {self.name}")
        self.user_properties.append(("extracted", str(record.get("extracted"))))
        reasons = list(record.get("reasons", [])) if record.get("passed", True) is False else []
        reasons += [_regression(check, report) for check in report.comparison
                    if check["item"] == self.name and not check["passed"]]
        if reasons:
            raise GateFailure("; ".join(reasons))


def _regression(check: dict[str, Any], report: ScanReport) -> str:
    from s2l_scan.report.compare import regression_reason

    return regression_reason(check, str(report.config.get("compare")))


class GateFailure(Exception):
    """A result crossed a threshold."""


@pytest.hookimpl(tryfirst=True)  # before junitxml's own sessionfinish writes the XML
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or state.report is None:
        return
    from s2l_scan.errors import S2LError
    from s2l_scan.report.junit import junit_properties

    for plugin in session.config.pluginmanager.get_plugins():
        if hasattr(plugin, "add_global_property"):  # the --junitxml writer (LogXML)
            for name, value in junit_properties(state.report):
                plugin.add_global_property(name, value)
    try:
        state.written = state.plan.write(state.report)
    except S2LError as error:
        state.write_error = str(error)
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or state.report is None:
        return
    from s2l_scan.report.console import render_results

    terminalreporter.write_sep("=", "s2l-scan")
    terminalreporter.write(render_results(state.report, color=terminalreporter.hasmarkup))
    for kind, path in state.written:
        terminalreporter.write_line(f"s2l-scan: {kind} report written to {path}")
    if state.write_error is not None:
        terminalreporter.write_line(f"s2l-scan: error: {state.write_error}", red=True)
