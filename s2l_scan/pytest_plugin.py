"""The pytest plugin (entry point ``pytest11``): ``pytest --s2l-model=PATH`` gates a release.

Kept cheap to import: loading this module must not import torch, diffusers, numpy or rich,
because pytest loads it in every test run of every project that has s2l-scan installed. The
engine is imported only when ``--s2l-model`` is given.

With ``--s2l-model``, one test item is collected per (attack, domain) plus ``pooled``, with ids
such as ``baselines::secmi[identity-3]``, the same again per probe setting
(``probes::noise/secmi[identity-3]``), and one per domain for extraction
(``extraction::released[identity-3]``). The scan runs once, in the first item's setup; a scan
error (a bad model or data folder, an unsafe checkpoint) ends the session there with one
message and exit status 2 (3: nothing to scan, 4: a usage error), as the CLI's, never 1, the
failed-gate status; a crossed threshold or a regression against
``--s2l-compare`` as a failure stating the numbers, the CI, the threshold and n. Report files
(``--s2l-report-*``, ``--s2l-sarif``) are written when the session ends, and the headline
numbers become ``<testsuite>`` properties of ``--junitxml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# cheap modules (no torch, numpy or rich): they keep the plugin cheap to load
from s2l_scan.errors import ExitCode
from s2l_scan.options import SCAN_INPUTS, argparse_help, plugin_spelling, scan_options

if TYPE_CHECKING:
    from s2l_scan.plan import ScanPlan
    from s2l_scan.report.model import ScanReport

_STATE = pytest.StashKey["_ScanState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("s2l", "s2l-scan: diffusion-model privacy gate")
    for given in SCAN_INPUTS:
        group.addoption(plugin_spelling(given.name), metavar=given.metavar, default=None,
                        help=argparse_help(given.help),
                        action="append" if given.repeated else "store")
    for option in scan_options():  # values None: "not given", so config files still apply
        if option.type is bool:
            group.addoption(option.pytest, action="store_true", default=None,
                            help=argparse_help(option.help))
        else:
            group.addoption(option.pytest, type=option.type, default=None,
                            metavar=option.metavar, help=argparse_help(option.help))


class _ScanState:
    """Per-session state (kept in ``config.stash``, not module globals)."""

    def __init__(self, plan: ScanPlan, config: pytest.Config) -> None:
        self.plan = plan
        self.config = config
        self.report: ScanReport | None = None
        self.error: BaseException | None = None
        self.written: list[tuple[str, Path]] = []
        self.write_error: str | None = None
        self.collected: set[str] = set()  # the check ids collected as test items

    def run(self) -> ScanReport:
        if self.report is None and self.error is None:
            from s2l_scan.session import run

            try:
                self.report = run(self.plan, _progress(self.config))
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
    from s2l_scan.plan import ScanInputs, build_plan

    try:
        config_file = _opt_path(config, "--s2l-config")
        file_values = read_config_file(config_file, config.rootpath)
        overrides = {option.key: config.getoption(option.pytest) for option in scan_options()}
        inputs = ScanInputs(model=model, data=config.getoption("--s2l-data"),
                            model_config=config.getoption("--s2l-model-config"),
                            lora=config.getoption("--s2l-lora"),
                            base_model=config.getoption("--s2l-base-model"))
        plan = build_plan(inputs, make_config(file_values, **overrides),
                          protected=[config_file] if config_file else [])
    except S2LError as error:
        raise pytest.UsageError(f"s2l-scan: {error}") from None
    config.stash[_STATE] = _ScanState(plan, config)
    config.pluginmanager.register(_JUnitInconclusive(config), "s2l-junit-inconclusive")


class _JUnitInconclusive:
    """Gives an inconclusive item's ``<failure>`` in ``--junitxml`` the type ``inconclusive``
    (pytest's writer sets no type), so a CI dashboard tells it from a shown leak."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)  # after the junitxml writer has added the <failure>
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or not report.failed or (
                "outcome", "inconclusive") not in report.user_properties:
            return
        from _pytest.junitxml import xml_key  # pytest's writer; no public accessor

        writer = self.config.stash.get(xml_key, None)
        if writer is None:
            return
        nodes = getattr(writer.node_reporter(report), "nodes", [])
        for node in reversed(nodes):
            if node.tag == "failure":
                node.set("type", "inconclusive")
                break


def _progress(config: pytest.Config) -> Any:
    """Plain timestamped progress lines on the terminal, live (capture suspended while one is
    written); none with ``-q``."""
    import contextlib

    from s2l_scan.progress import PlainProgress, quiet

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.getoption("verbose") < 0:
        return quiet
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        with (capture.global_and_fixture_disabled() if capture is not None
              else contextlib.nullcontext()):
            reporter.write_line(line)

    return PlainProgress(write, label="s2l-scan: ")


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
        checks = state.plan.checks(_domain_names(state.plan, _progress(config)))
    except S2LError as error:
        state.error = error  # the summary then says this, not "no check was selected"
        raise pytest.UsageError(f"s2l-scan: {error}") from None
    for check in checks:
        # nodeid = the check id: "::baselines::loss[...]" (the session's empty id joined on)
        # gave JUnit the classname ".baselines"
        items.append(S2LItem.from_parent(session, name=str(check), nodeid=str(check)))


def _domain_names(plan: ScanPlan, progress: Any) -> list[str]:
    from s2l_scan.io.audit_data import list_domains
    from s2l_scan.session import resolve_inputs

    # the reference model, when asked for and not cached yet, is built here (minutes)
    _, data_dir = resolve_inputs(plan.inputs, plan.config, progress)
    return list_domains(data_dir, plan.config.domains)


class S2LItem(pytest.Item):
    """One gate check of the shared scan, named by its check id, e.g.
    ``baselines::secmi[identity-3]``, ``probes::noise/loss[pooled]`` or
    ``extraction::released[identity-3]``. The scan runs in the first item's setup."""

    def _state(self) -> _ScanState:
        return self.config.stash[_STATE]

    def setup(self) -> None:
        try:
            self._state().run()
        except Exception as error:  # a scan *error*, not a gate failure: stop, report once
            _stop_on_scan_error(error, self.config)

    def runtest(self) -> None:
        state = self._state()
        state.collected.add(self.name)
        report = state.run()
        mine = [check for check in report.checks() if str(check.check_id) == self.name]
        record = next((check for check in mine if not isinstance(check, _comparison_type())),
                      None)
        if record is None:  # collected but not measured: never a silent pass
            raise GateFailure("the scan report has no result for this check; checks: "
                              + ", ".join(str(check.check_id) for check in report.checks()))
        # shown as <properties> of this <testcase> in --junitxml
        # observed_*: what this check measured; threshold_*: the gate's limit for it
        self.user_properties += list(record.properties(report.config).items())
        outcome = _outcome(mine)
        # a failed item states what failed; an inconclusive one what would decide it
        reasons = "; ".join(reason.text for check in mine for reason in check.reasons
                            if outcome != "failed" or reason.kind != "undecided")
        if outcome == "failed":
            raise GateFailure(reasons or "failed")
        if outcome == "inconclusive" and record.gating:
            if _inconclusive_fails(report):
                raise GateFailure(f"INCONCLUSIVE: {reasons or 'not decided'}")
            pytest.skip(f"INCONCLUSIVE: {reasons or 'not decided'}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        from s2l_scan.errors import S2LError

        if isinstance(excinfo.value, GateFailure | S2LError):
            return f"{self.name}: {excinfo.value}"
        return f"{self.name}: internal error in the scan: {excinfo.value!r}"

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "s2l-scan", None, self.name


def _stop_on_scan_error(error: Exception, config: pytest.Config) -> None:
    """End the session on a scan error, with one message and the CLI's exit code for it
    (:data:`SCAN_ERROR_EXIT`), never the failed-gate code: no check was judged, so no item
    may pass or fail. An unexpected exception is an internal error; ``--full-trace`` (or
    ``--tb=long``) shows its traceback once."""
    import traceback

    from s2l_scan.errors import S2LError

    if isinstance(error, S2LError):
        message = f"s2l-scan: error: {error}"
        code = error.exit_code
    else:
        if config.getoption("fulltrace", False) or config.getoption("tbstyle", "") == "long":
            traceback.print_exception(error)
        message = (f"s2l-scan: internal error in the scan ({type(error).__name__}: {error}). "
                   "Nothing was judged. Rerun with --full-trace for the traceback and please "
                   "report it.")
        code = SCAN_ERROR_EXIT
    pytest.exit(message, returncode=code)


SCAN_ERROR_EXIT = int(ExitCode.SCAN_ERROR)
"""The exit status of a session whose scan could not run (as the CLI's: 2 scan error or
internal error, 3 nothing to scan, 4 usage error), never 1, a failed gate."""


def _comparison_type() -> type:
    from s2l_scan.report.model import ComparisonCheck

    return ComparisonCheck


def _outcome(checks: list[Any]) -> str:
    """The outcome of one item's checks (its record and any regression check of it)."""
    from s2l_scan.checks import combine

    return str(combine((check.outcome, check.gating) for check in checks))


def _inconclusive_fails(report: ScanReport) -> bool:
    from s2l_scan.gate import inconclusive_fails

    return inconclusive_fails(report.config)


class GateFailure(Exception):
    """A result crossed a threshold."""


@pytest.hookimpl(tryfirst=True)  # before junitxml's own sessionfinish writes the XML
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    if state.report is None:
        # every check deselected (-k, --deselect): nothing was judged, which must not read as
        # a passing gate; --collect-only only lists the checks
        if (state.error is None and session.exitstatus == pytest.ExitCode.OK
                and not session.config.getoption("collectonly")):
            session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
        return
    from s2l_scan.errors import S2LError
    from s2l_scan.report.junit import junit_properties

    for plugin in session.config.pluginmanager.get_plugins():
        if hasattr(plugin, "add_global_property"):  # the --junitxml writer (LogXML)
            for name, value in junit_properties(state.report):
                plugin.add_global_property(name, value)
    try:
        state.written = state.plan.outputs.write(state.report)
    except S2LError as error:
        state.write_error = str(error)
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    # The session fails whenever the report's verdict fails, checks that were never items
    # included: sweep rows (named at run time) and checks deselected with -k / --deselect; an
    # inconclusive verdict exits 6 (ExitCode.INCONCLUSIVE) unless on_inconclusive is "warn".
    from s2l_scan.gate import exit_code

    code = exit_code(state.report)
    if code and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = int(code)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    if state.report is None:
        if state.error is None and not config.getoption("collectonly"):
            terminalreporter.write_line(
                "s2l-scan: no check was selected (-k / --deselect), so nothing was scanned or "
                f"judged; exit {int(pytest.ExitCode.NO_TESTS_COLLECTED)}", red=True)
        return
    from s2l_scan.report.console import render_results

    terminalreporter.write_sep("=", "s2l-scan")
    terminalreporter.write(render_results(state.report, color=terminalreporter.hasmarkup))
    unseen = [item for item in state.report.failed_items if item not in state.collected]
    if unseen:
        terminalreporter.write_line(
            f"s2l-scan: the verdict FAILED on {len(unseen)} check(s) that ran as no test item "
            f"(sweep rows, or deselected): {', '.join(unseen)}", red=True)
    undecided = [item for item in state.report.inconclusive_items
                 if item not in state.collected]
    if undecided and state.report.outcome == "inconclusive":
        terminalreporter.write_line(
            f"s2l-scan: the verdict is INCONCLUSIVE on {len(undecided)} check(s) that ran as no "
            f"test item (sweep rows, or deselected): {', '.join(undecided)}", yellow=True)
    for kind, path in state.written:
        terminalreporter.write_line(f"s2l-scan: {kind} report written to {path}")
    if state.write_error is not None:
        terminalreporter.write_line(f"s2l-scan: error: {state.write_error}", red=True)
