"""The ``s2l-scan`` command line. Thin: parses, calls the engine, maps errors to exit codes.

Exit codes (:class:`~s2l_scan.errors.ExitCode`; README, exit codes): 0 pass, 1 gate failed,
2 scan error, 3 nothing scanned, 4 usage error, 6 inconclusive (``on_inconclusive = "fail"``).
A crash never passes: an unexpected exception exits 2 with a one-line message.
"""

from __future__ import annotations

import argparse
import difflib
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from s2l_scan import __version__
from s2l_scan.errors import ExitCode, S2LError, UsageError
from s2l_scan.options import SCAN_INPUTS, Option, argparse_help, cli_spelling, scan_options
from s2l_scan.reference.presets import PRESETS  # stdlib only: cheap
from s2l_scan.report.outputs import RENDERERS  # cheap, like options: no torch, numpy or rich

if TYPE_CHECKING:  # rich loads only when a progress bar is shown
    from contextlib import AbstractContextManager

    from rich.console import Console

EXIT_OK, EXIT_GATE, EXIT_ERROR, EXIT_NOTHING, EXIT_USAGE = (
    ExitCode.PASSED, ExitCode.FAILED, ExitCode.SCAN_ERROR, ExitCode.NOTHING_SCANNED,
    ExitCode.USAGE)
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(BaseException):
    """SIGTERM (CI cancelling a job): unwind so temporary files are removed, then exit 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 4, and every (sub)command takes ``--debug``, before or after its
    name: error messages say "rerun with --debug" without knowing where it goes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: ``--evid`` must not mean ``--evidence-dir``. A wrapper (the Action,
        # a CI script) that refuses an option by its name could otherwise be bypassed.
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser sets ``debug`` only when given, so it never resets
        # a --debug given before the subcommand
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show tracebacks of internal errors")

    def error(self, message: str) -> NoReturn:
        # argparse exits 2 on usage errors; s2l-scan reserves 2 for scan errors.
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}{self._did_you_mean(message)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def _did_you_mean(self, message: str) -> str:
        """``; did you mean --max-auc?`` for each unrecognized option close to a real one."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        known = sorted(_option_names(self))
        hints = []
        for given in message[len(prefix):].split():
            name = given.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            if name.startswith("--") and close:
                hints.append(f"{name}: did you mean {close[0]}?")
        return "".join(f"\n  {hint}" for hint in hints)


def _option_names(parser: argparse.ArgumentParser) -> set[str]:
    """Every option spelling of ``parser`` and its subcommands (unrecognized arguments are
    reported by the top-level parser, whatever subcommand they followed)."""
    names: set[str] = set()
    for action in parser._actions:
        names.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _option_names(sub)
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _knob(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.replace("-", "_"), value


DESCRIPTION = """Scan a diffusion model for training-data leakage (membership inference,
extraction of training images, Shake-to-Leak probes) and gate its release on the result."""
EXAMPLES = """examples:
  s2l-scan data build --members TRAIN --nonmembers HELDOUT --out audit --resolution 512 \\
      --prompt "a photo of sks person"          # the audit data, from your training set
  s2l-scan scan MODEL --data audit --report-html report.html
  s2l-scan scan reference --reference-preset tiny   # try it on the offline reference model
  s2l-scan report report.json --model-card MODEL/README.md

exit codes: 0 pass, 1 gate failed, 2 scan error, 3 nothing scanned, 4 usage error.
What a scan costs, and the GitHub Action: README.md."""
SCAN_EXAMPLES = """examples:
  s2l-scan scan MODEL --data audit                  # the default scan, default gate
  s2l-scan scan MODEL --data audit --base-model BASE --report-json r.json --report-html r.html
  s2l-scan scan MODEL --data audit --budget 3h --device cuda
  s2l-scan scan MODEL --data audit --compare previous.json --compare-fail auc:+0.02

Every option can live in s2l.toml or [tool.s2l] of pyproject.toml instead (examples/s2l.toml).
A failed check's "what to do next" is in docs/checks/."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``s2l-scan`` (also used to document the CLI)."""
    parser = _Parser(prog="s2l-scan", description=DESCRIPTION, epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    reference = commands.add_parser("reference", help="the offline reference model")
    actions = reference.add_subparsers(dest="action", required=True, parser_class=_Parser)
    build = actions.add_parser("build", help="build (or fetch from cache) a reference model")
    build.add_argument("--out", type=Path, help="write here (must not exist); default: the cache")
    build.add_argument("--preset", default="default",
                       help=" | ".join(PRESETS) + " (finetune: a release and its base)")
    build.add_argument("--seed", type=int, default=0, help="seed of data, init and training")
    build.add_argument("--set", dest="knobs", type=_knob, action="append", default=[],
                       metavar="KNOB=VALUE",
                       help="override a preset knob, e.g. --set members_per_identity=8")
    build.add_argument("--threads", type=_positive_int, default=1,
                       help="torch CPU threads (1 is fastest on busy 2-core machines)")
    build.add_argument("--device", default="cpu",
                       help="torch device to train on (default cpu; cuda builds are cached apart)")
    build.add_argument("--json", action="store_true", help="print the manifest as JSON")

    index = commands.add_parser("index", help="the on-disk known-image index for extraction")
    index_actions = index.add_subparsers(dest="action", required=True, parser_class=_Parser)
    index_build = index_actions.add_parser(
        "build", help="index a folder of images (millions) into a new sharded folder")
    index_build.add_argument("--images", type=Path, required=True,
                             help="folder of .png/.jpg/.jpeg/.webp images, searched recursively")
    index_build.add_argument("--out", type=Path, required=True,
                             help="write the sharded index here (must not exist)")
    index_build.add_argument("--resolution", type=_positive_int, required=True,
                             help="image side in pixels: the resolution of the model to scan")
    index_build.add_argument("--shard-size", type=_positive_int, default=250_000,
                             help="images per shard (default 250000; memory while building is "
                                  "one shard)")

    _add_data_commands(commands)

    scan = commands.add_parser("scan", help="scan a checkpoint and gate on the results",
                               description="Scan a checkpoint and gate its release on the "
                                           "results.", epilog=SCAN_EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_scan_arguments(scan, scan_options())
    scan.add_argument("-q", "--quiet", action="store_true",
                      help="no progress while scanning (the results and verdict still print)")
    scan.add_argument("--quick", action="store_true",
                      help="a first look, not a release gate: " + _quick_text() + "; the "
                           "config file and options given here still win")

    null = commands.add_parser(
        "null-audit", help="measure the gate's false-fail rate on null audits of your data",
        description="Scan DRAWS null audits: in draw i each domain's non-members are split at "
                    "random (seed SEED + i) into pseudo-members and pseudo-non-members, in a "
                    "temporary folder (your data is only read), and scanned with the given "
                    "options and scan seed SEED + i (resample seed BOOTSTRAP_SEED + i where "
                    "set). Every failed check is a false fail; prints the FAILED, "
                    "INCONCLUSIVE and PASSED rates per scan, the false-fail rate per check "
                    "kind and each failing check's recurrence, with Clopper-Pearson 95% CIs "
                    "(approximate: the draws re-split one pool, so they are dependent); a check "
                    "that cannot fail at this n is 'not gated at this n'. Exit 0 when it ran: "
                    "it measures, it does not gate. Cost: about DRAWS scans, each with its own "
                    "seed (so little of the unit cache is reused across draws).")
    null.add_argument("--draws", type=_positive_int, required=True,
                      help="null audits to scan (e.g. 20; the CI narrows as 1/sqrt(draws))")
    _add_scan_arguments(null, null_audit_options())
    null.add_argument("--report-json", type=Path, metavar="FILE",
                      help="write the null audit (rates, CIs, every draw's split and failed "
                           "checks) as JSON")

    leak = commands.add_parser(
        "leak-audit", help="measure the gate's false-pass rate on subsets of your real members",
        description="The false-PASS side of null-audit: for each n in SIZES, scan DRAWS audits "
                    "of n random members and n random non-members per domain (draw i: subset "
                    "seed SEED + i, scan seed SEED + i), in a temporary folder of copies (your "
                    "data is only read). On a model that memorizes its members every PASS is a "
                    "false pass; prints the FAILED, INCONCLUSIVE and PASSED rates by n with "
                    "Clopper-Pearson 95% CIs (approximate: the draws subsample one pool, so "
                    "they are dependent). Exit 0 when it ran. Cost: DRAWS x len(SIZES) scans.")
    leak.add_argument("--sizes", type=_sizes, required=True, metavar="N,N,...",
                      help="members (and as many non-members) per domain, e.g. 8,16,32,48")
    leak.add_argument("--draws", type=_positive_int, required=True,
                      help="audits to scan per size")
    _add_scan_arguments(leak, null_audit_options())
    leak.add_argument("--report-json", type=Path, metavar="FILE",
                      help="write the leak audit (rates by n, every draw's subset) as JSON")

    report = commands.add_parser("report", help="render a JSON report as HTML, Markdown, SARIF "
                                                "or into a model card")
    report.add_argument("report", type=Path, help="a JSON report (scan --report-json)")
    for kind, renderer in RENDERERS.items():
        report.add_argument(f"--{kind}", type=Path, metavar="FILE",
                            help=argparse_help(renderer.help))
    report.add_argument("--model-card", type=Path, metavar="README.md",
                        help="add or update the privacy-scan section and model-index metadata "
                             "of this Hugging Face model card (created when missing)")
    report.add_argument("--model-name", help="model-index name when the card has none "
                                             "(default: the model folder's name)")
    report.add_argument("--compare", type=Path, metavar="PREVIOUS.json",
                        help="compare with an earlier report: regressions, dropped and new "
                             "checks, configuration changes; exit 1 when the comparison fails")
    report.add_argument("--compare-fail", metavar="METRIC:+AMOUNT,...",
                        help="with --compare: fail when a metric rose more than this, e.g. "
                             "auc:+0.02,extracted:+0 (default: compare only)")
    report.add_argument("--allow-dropped-checks", action="store_true",
                        help="with --compare: accept checks of PREVIOUS.json this report lacks "
                             "(default: a dropped check fails the comparison)")
    report.add_argument("--card-license", metavar="ID",
                        help="Hub license id (e.g. apache-2.0) for a card that has none; an "
                             "existing license is kept. Without it a new card has no license")
    return parser


def _add_data_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    data = commands.add_parser("data", help="audit data from a fine-tuning set and a held-out "
                                            "set (docs/audit-data.md)")
    actions = data.add_subparsers(dest="action", required=True, parser_class=_Parser)
    build = actions.add_parser(
        "build", help="check and write an audit-data folder",
        description="Read the training set (--members) and a held-out set (--nonmembers) in "
                    "any common convention (imagefolder metadata.jsonl/csv, image + .txt "
                    "caption files, a CSV/JSONL manifest, plain folders), drop duplicates "
                    "within and across the sets, draw balanced seeded sets per domain, check "
                    "the held-out set for distribution shift, then write DIR/<domain>/... "
                    "and audit-manifest.json. Nothing is written when a check fails.")
    build.add_argument("--members", type=Path, required=True, metavar="SRC",
                       help="the training set: a folder or a .csv/.jsonl manifest")
    build.add_argument("--nonmembers", type=Path, required=True, metavar="SRC",
                       help="held-out images of the same kind, never trained on")
    build.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="the audit folder to write (must not exist or be empty)")
    build.add_argument("--resolution", type=_positive_int, required=True,
                       help="the model's image side in pixels (duplicates and shift are "
                            "checked at it)")
    build.add_argument("--prompt", required=True,
                       help="the domain prompt; {domain} is replaced by the domain's name")
    build.add_argument("--domains", choices=("single", "subfolders", "keywords"),
                       default="single", help="one domain (default), one per first-level "
                                              "sub-folder, or one per --keyword")
    build.add_argument("--keyword", dest="keywords", action="append", default=[],
                       metavar="WORD", help="a trigger word naming a domain (repeat; with "
                                            "--domains keywords)")
    build.add_argument("--domain-name", default="main", help="the single domain's name")
    build.add_argument("--per-domain", type=_positive_int, metavar="N",
                       help="at most N members and N non-members per domain (default: all "
                            "that pair)")
    build.add_argument("--seed", type=int, default=0, help="seed of the draws and the check")
    build.add_argument("--delta", type=float, default=None,
                       help="near-copy radius, RMS of [0, 1] pixels (default: the extraction "
                            "δ, extraction_delta; set both alike)")
    build.add_argument("--known", choices=("rest", "none"), default="rest",
                       help="rest: training images not drawn go to known/ for extraction")
    build.add_argument("--no-flips", dest="flips", action="store_false",
                       help="the model was trained without mirrored images: a mirrored copy "
                            "is no duplicate (default: duplicates are searched mirrored too, "
                            "as OneTrainer, kohya --flip_aug and diffusers --random_flip "
                            "train on mirrored images)")
    build.add_argument("--strict", action="store_true",
                       help="exit 1 and write nothing when the held-out set is shifted")
    build.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    build.add_argument("--force", action="store_true",
                       help="replace --out if an earlier data build wrote it")


HELP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the gate (thresholds a release must stay under)",
     ("max_auc", "max_tpr", "max_amplification", "max_extracted", "max_text_guidance",
      "max_anisotropy", "ci_end", "family_alpha", "on_inconclusive")),
    ("attacks, probes and domains", ("attacks", "probes", "domains", "sweep",
                                     "memorization_starts", "anisotropy_starts")),
    ("extraction", ("extraction_samples", "sampler", "extraction_steps", "sp_samples",
                    "negative_prompt", "embedder", "extraction_candidates", "known_images",
                    "known_index", "index_cache_dir", "evidence_dir")),
    ("compute, time and cache", ("device", "dtype", "threads", "batch_size", "budget", "cache",
                                 "cache_dir", "allow_pickle")),
    ("reports and the regression compare", ("report_json", "report_html", "report_markdown",
                                            "report_sarif", "compare", "compare_fail",
                                            "allow_dropped_checks")),
    ("seeds and the reference model", ("seed", "bootstrap", "bootstrap_seed",
                                       "reference_preset", "reference_seed")),
)
"""How ``scan --help`` groups the options; an option in no group is listed under "more"."""


def _add_scan_arguments(parser: argparse.ArgumentParser, options: list[Option]) -> None:
    """The scan's inputs (model, --data, ...) and ``options``, as ``s2l-scan scan`` has them,
    in the groups of :data:`HELP_GROUPS`."""
    inputs = parser.add_argument_group("what to scan")
    for given in SCAN_INPUTS:
        parse = Path if given.name == "config" else str
        if given.positional:
            inputs.add_argument(given.name, type=parse, help=argparse_help(given.help))
        else:
            inputs.add_argument(cli_spelling(given.name), dest=given.name, type=parse,
                                metavar=given.metavar, help=argparse_help(given.help),
                                action="append" if given.repeated else "store")
    group_of = {key: title for title, keys in HELP_GROUPS for key in keys}
    groups = {title: parser.add_argument_group(title) for title, _ in HELP_GROUPS}
    more = parser.add_argument_group("more")
    for option in options:  # values None: "not given", so config files still apply
        group = groups.get(group_of.get(option.key, ""), more)
        if option.type is bool:
            group.add_argument(option.cli, dest=option.key, action="store_true", default=None,
                               help=argparse_help(option.help))
        else:
            group.add_argument(option.cli, dest=option.key, type=option.type, default=None,
                               metavar=option.metavar, help=argparse_help(option.help))


def null_audit_options() -> list[Option]:
    """The scan options ``s2l-scan null-audit`` offers: all but the per-scan report files
    (it writes its own report) and the regression compare (a null audit is no release)."""
    reports = {renderer.config_key for renderer in RENDERERS.values()}
    return [option for option in scan_options()
            if option.key not in reports and option.key not in ("compare", "compare_fail",
                                                    "allow_dropped_checks")]


def _reference_build(args: argparse.Namespace) -> int:
    from s2l_scan.reference.presets import coerce_knobs, get_preset
    from s2l_scan.report.console import make_console, render_manifest

    preset = get_preset(args.preset).with_overrides(**coerce_knobs(args.knobs))
    console = make_console(stderr=args.json)
    if args.out is not None and args.out.exists():
        raise UsageError(f"--out {args.out}: already exists; s2l-scan never overwrites a folder. "
                         "Choose a new path or remove it yourself.")
    with _progress(console) as progress:
        if args.out is None:
            from s2l_scan.reference.cache import cached_reference

            folder = cached_reference(preset, args.seed, threads=args.threads, progress=progress,
                                      device=args.device)
        else:
            from s2l_scan.reference.build import build_reference

            build_reference(args.out, preset, args.seed, threads=args.threads, progress=progress,
                            device=args.device)
            folder = args.out
    manifest = json.loads((folder / "manifest.json").read_text())
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        render_manifest(manifest, str(folder), console)
    return EXIT_OK


def _data_build(args: argparse.Namespace) -> int:
    from s2l_scan.audit_build import BuildOptions, build_audit, render_build
    from s2l_scan.report.console import make_console

    options = BuildOptions(resolution=args.resolution, prompt=args.prompt, domains=args.domains,
                           keywords=tuple(args.keywords), domain_name=args.domain_name,
                           per_domain=args.per_domain, seed=args.seed, known=args.known,
                           strict=args.strict, flips=args.flips,
                           **({} if args.delta is None else {"delta": args.delta}))
    with _progress(make_console(stderr=True)) as progress:
        result = build_audit(args.members, args.nonmembers, args.out, options, force=args.force,
                             dry_run=args.dry_run, progress=progress)
    sys.stdout.write(render_build(result))
    return EXIT_GATE if args.strict and result.shifted else EXIT_OK


def _index_build(args: argparse.Namespace) -> int:
    import time

    from s2l_scan.extraction.sharded import build_from_folder
    from s2l_scan.report.console import make_console

    clock = time.perf_counter()
    with _progress(make_console(stderr=True)) as progress:
        meta = build_from_folder(args.images, args.out, resolution=args.resolution,
                                 shard_size=args.shard_size, progress=progress)
    print(f"indexed {meta['count']} images into {len(meta['shards'])} shard(s) at {args.out} "
          f"in {time.perf_counter() - clock:.1f} s")
    return EXIT_OK


def _progress(console: Console, quiet: bool = False
              ) -> AbstractContextManager[Callable[[str, int, int], None]]:
    """``progress(stage, done, total)`` for a command: rich bars in a terminal, plain
    timestamped lines on stderr otherwise (CI logs), nothing with ``quiet``."""
    from s2l_scan.report.console import progress_display

    return progress_display(console, quiet)


def _scan(args: argparse.Namespace) -> int:
    from s2l_scan.config import make_config, read_config_file
    from s2l_scan.gate import exit_code
    from s2l_scan.parallel import finish, world
    from s2l_scan.plan import ScanInputs, build_plan
    from s2l_scan.report.console import make_console, render_results
    from s2l_scan.session import run

    overrides = {option.key: getattr(args, option.key) for option in scan_options()}
    quick = dict(QUICK) if args.quick else {}  # under the file: the file and options win
    config = make_config({**quick, **read_config_file(args.config, Path.cwd())}, **overrides)
    if args.quick:
        print(f"s2l-scan: --quick: {_quick_text()}: a first look, not a release gate",
              file=sys.stderr)
    plan = build_plan(ScanInputs(model=args.model, data=args.data,
                                 model_config=args.model_config, lora=args.lora,
                                 base_model=args.base_model),
                      config, protected=[args.config] if args.config else [])
    console = make_console()
    here = world()
    _warn_idle_gpu(config.device)
    try:
        if not here.is_main:
            # A data-parallel helper: rank 0 judges and reports, and its exit code is the
            # scan's. Helpers wait for it and exit 0, since a launcher stops every process as
            # soon as one exits non-zero, which could cut rank 0's report writing short.
            run(plan)
            here.barrier()
            return EXIT_OK
        with _progress(console, quiet=args.quiet) as progress:
            report = run(plan, progress)
        sys.stdout.write(render_results(report, color=not console.no_color))
        for kind, path in plan.outputs.write(report):
            console.print(f"{kind} report: {path}")
        here.barrier()
        return exit_code(report)
    finally:
        finish()


QUICK: dict[str, Any] = {"attacks": ["loss"], "probes": ["noise"], "extraction_samples": 8,
                         "sp_samples": 8, "bootstrap": 200}
"""What ``scan --quick`` sets, below the config file and the command line."""


def _quick_text() -> str:
    return ", ".join(f"{key} {','.join(map(str, value)) if isinstance(value, list) else value}"
                     for key, value in QUICK.items())


def _warn_idle_gpu(device: str) -> None:
    from s2l_scan.devices import idle_gpu_note

    note = idle_gpu_note(device)
    if note is not None:
        print(f"s2l-scan: {note}", file=sys.stderr)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers ≥ 2, got {text!r}") from None
    if not sizes or min(sizes) < 2 or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"expected distinct integers ≥ 2, got {text!r}")
    return sizes


def _audit_setup(args: argparse.Namespace) -> tuple[Any, Any, list[Path]]:
    """The config, inputs and protected paths of a null or leak audit; its report path
    checked."""
    from s2l_scan.config import make_config, read_config_file
    from s2l_scan.plan import ScanInputs
    from s2l_scan.report.files import check_outputs

    overrides = {option.key: getattr(args, option.key) for option in null_audit_options()}
    config = make_config(read_config_file(args.config, Path.cwd()), **overrides)
    protected = [args.config] if args.config else []
    inputs = ScanInputs(model=args.model, data=args.data, model_config=args.model_config,
                        lora=args.lora, base_model=args.base_model)
    if args.report_json is not None:
        check_outputs({"--report-json": args.report_json}, [*protected, *inputs.paths])
    return config, inputs, protected


def _leak_audit(args: argparse.Namespace) -> int:
    from s2l_scan.null_audit import run_leak_audit
    from s2l_scan.report.console import make_console, render_draw, render_leak_audit

    config, inputs, protected = _audit_setup(args)
    console = make_console()
    with _progress(console) as progress:
        audit = run_leak_audit(inputs, config, args.sizes, args.draws, protected=protected,
                               progress=progress,
                               on_draw=lambda size, draw: console.print(
                                   render_draw(draw, size), soft_wrap=True))
    return _finish_audit(audit, render_leak_audit(audit, color=not console.no_color),
                         args.report_json, console, "leak-audit")


def _null_audit(args: argparse.Namespace) -> int:
    from s2l_scan.null_audit import run_null_audit
    from s2l_scan.report.console import make_console, render_draw, render_null_audit

    config, inputs, protected = _audit_setup(args)
    console = make_console()
    with _progress(console) as progress:
        audit = run_null_audit(inputs, config, args.draws, protected=protected, progress=progress,
                               on_draw=lambda draw: console.print(render_draw(draw),
                                                                  soft_wrap=True))
    return _finish_audit(audit, render_null_audit(audit, color=not console.no_color),
                         args.report_json, console, "null-audit")


def _finish_audit(audit: Any, summary: str, report_json: Path | None, console: Any,
                  name: str) -> int:
    """An audit's notes and summary on stdout, and its JSON report when asked for."""
    from s2l_scan.report.files import write_text_atomic

    for note in audit.notes:
        console.print(f"note: {note}", soft_wrap=True)
    sys.stdout.write(summary)
    if report_json is not None:
        write_text_atomic(report_json, json.dumps(audit.to_dict(), indent=2) + "\n")
        console.print(f"{name} report: {report_json}")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from s2l_scan.report.files import check_outputs, load_report, write_text_atomic
    from s2l_scan.report.outputs import write_reports

    wanted = {kind: getattr(args, kind) for kind in RENDERERS if getattr(args, kind) is not None}
    if not wanted and args.model_card is None and args.compare is None:
        files = ", ".join(f"--{kind} FILE" for kind in RENDERERS)
        raise UsageError(f"nothing to write: give {files}, --model-card README.md and/or "
                         "--compare PREVIOUS.json")
    inputs: list[Path | str] = [args.report, *([args.compare] if args.compare else [])]
    check_outputs({f"--{kind}": path for kind, path in wanted.items()}, inputs)
    report = load_report(args.report)
    inputs += _scanned_paths(report)  # the model, adapters and audit data the report names
    check_outputs({f"--{kind}": path for kind, path in wanted.items()}, inputs)
    if args.model_card is not None:
        check_outputs({"--model-card": args.model_card}, [*inputs, *wanted.values()])
    compared = _report_compare(args, report)
    # relative evidence paths were written relative to where the scan ran; try the report's
    # own folder first, then the current one
    for kind, path in write_reports(report, wanted, base=args.report.parent):
        print(f"{kind} report: {path}")
    if args.model_card is not None:
        from s2l_scan.report.model_card import update_model_card

        card = _read_card(args.model_card)
        write_text_atomic(args.model_card, update_model_card(card, report, args.model_name,
                                                              args.card_license))
        print(f"model card updated: {args.model_card}")
    return EXIT_OK if compared else EXIT_GATE


def _scanned_paths(report: Any) -> list[str]:
    """The folders and files a report says its scan read (model, adapters, audit data), so
    that ``s2l-scan report`` writes over none of them; a reference build's are the tool's."""
    model = report.model if isinstance(report.model, dict) else {}
    data = report.data if isinstance(report.data, dict) else {}
    paths = [model.get("path"), data.get("root")]
    paths += [adapter.get("path") for adapter in model.get("adapters") or []
              if isinstance(adapter, dict)]
    return [path for path in paths if isinstance(path, str) and path]


def _report_compare(args: argparse.Namespace, report: Any) -> bool:
    """``report --compare``: the comparison stored in ``report`` and printed; True unless it
    failed (always True without --compare)."""
    if args.compare is None:
        if args.compare_fail is not None or args.allow_dropped_checks:
            raise UsageError("--compare-fail and --allow-dropped-checks need --compare "
                             "PREVIOUS.json")
        return True
    from s2l_scan.gate import compare_saved
    from s2l_scan.report.compare import parse_allowances, summary
    from s2l_scan.report.files import read_report_dict

    allowances = parse_allowances(args.compare_fail) if args.compare_fail is not None else ()
    previous = read_report_dict(args.compare, what="previous report (compare)")
    passed = compare_saved(report, previous, str(args.compare), allowances,
                           args.allow_dropped_checks)
    for line in summary(report.comparison, report.config_changes, str(args.compare),
                        args.compare_fail, args.allow_dropped_checks):
        print(line)
    print(f"comparison: {'passed' if passed else 'FAILED'}")
    return passed


def _read_card(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"model card {path} cannot be read: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``s2l-scan`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Only the main thread may set handlers; an embedding program keeps its own afterwards.
    previous = (signal.signal(signal.SIGTERM, _on_sigterm)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        return _run(parser, args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        if args.command == "reference":
            return _reference_build(args)
        if args.command == "data":
            return _data_build(args)
        if args.command == "index":
            return _index_build(args)
        if args.command == "scan":
            return _scan(args)
        if args.command == "null-audit":
            return _null_audit(args)
        if args.command == "leak-audit":
            return _leak_audit(args)
        if args.command == "report":
            return _report(args)
    except S2LError as error:
        print(f"s2l-scan: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("s2l-scan: interrupted; finished units are cached, rerun to resume",
              file=sys.stderr)
        return 130
    except _Terminated:
        print("s2l-scan: terminated (SIGTERM); finished units are cached, rerun to resume",
              file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as error:
        if getattr(args, "debug", False):
            raise
        print(f"s2l-scan: internal error ({type(error).__name__}: {error}). Nothing was "
              "judged. Rerun with --debug for the traceback and please report it.",
              file=sys.stderr)
        return EXIT_ERROR
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
