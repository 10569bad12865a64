"""Study: the verdict on a model that memorizes, at the audit sizes releases have (issue 24).

Takes a built model with its audit data (e.g. ``s2l-scan reference build --preset tiny --set
members_per_identity=16 --set nonmembers_per_identity=16 --set unet_steps=800 --out REF``),
cuts the audit down to ``n`` members and ``n`` non-members per domain (the first ``n`` files
of each, sorted; ``--domains`` keeps only those domains), scans each cut with the CLI and the
given scan options, and prints one JSON line per case: the verdict (outcome, exit code), how
many checks failed / were inconclusive, and the loss row of each domain (calibrated AUC,
upper bound, family-wise p). Nothing of the model or its data is changed: the cuts are
copies in ``OUT`` (the loader refuses links that leave the data folder).

    python studies/small_audits.py REF OUT --case 3:identity-0,identity-1 --case 5:identity-0 \\
        --case 16:identity-0,identity-1 --scan-options "--probes '' --extraction-samples 0"
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def cut(data: Path, out: Path, n: int, domains: list[str], start: int = 0) -> Path:
    """A copy of ``data`` with ``n`` members and non-members of each of ``domains``: the
    files ``start`` … ``start + n − 1`` of each folder, sorted."""
    out.mkdir(parents=True)
    for domain in domains:
        source, target = data / domain, out / domain
        target.mkdir()
        for name in ("prompt.txt", "captions.jsonl"):
            if (source / name).exists():
                shutil.copy2(source / name, target / name)
        for role in ("members", "nonmembers"):
            (target / role).mkdir()
            files = sorted(p for p in (source / role).iterdir() if p.is_file())[start:start + n]
            if len(files) < n:
                raise SystemExit(f"{source / role} holds {len(files)} images, fewer than {n}")
            for path in files:
                shutil.copy2(path, target / role / path.name)
    return out


def scan(model: Path, data: Path, report: Path, options: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "s2l_scan", "scan", str(model), "--data", str(data),
               "--report-json", str(report), *options]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    body = json.loads(report.read_text()) if report.exists() else {}
    verdict = body.get("verdict", {})
    rows = [{"item": f"{r['attack']}[{r['domain']}]", "auc": round(r["auc"], 3),
             "auc_upper": None if r.get("auc_upper") is None else round(r["auc_upper"], 3),
             "p_adjusted": r.get("p_adjusted"), "outcome": r.get("outcome")}
            for r in body.get("results", []) if r["attack"] == "loss" and r["probe"] is None]
    return {"exit": done.returncode, "outcome": verdict.get("outcome"),
            "failed": len(verdict.get("failed_items", [])),
            "inconclusive": len(verdict.get("inconclusive_items", [])),
            "checks": len(body.get("results", [])) + len(body.get("extraction", [])),
            "loss_rows": rows, "stderr_tail": done.stderr.strip().splitlines()[-1:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="a folder with model/ and data/")
    parser.add_argument("out", type=Path, help="a new folder for the cuts and reports")
    parser.add_argument("--case", action="append", required=True,
                        help="N:DOMAIN[,DOMAIN...][@START] (N members and N non-members per "
                             "domain, from the START-th file of each folder, default 0)")
    parser.add_argument("--scan-options", default="",
                        help="options for s2l-scan scan, as one shell-quoted string")
    args = parser.parse_args(argv)
    args.scan_options = shlex.split(args.scan_options)
    args.out.mkdir(parents=True)
    for i, case in enumerate(args.case):
        n_text, rest = case.split(":", 1)
        domains_text, _, start = rest.partition("@")
        data = cut(args.reference / "data", args.out / f"case-{i}", int(n_text),
                   domains_text.split(","), int(start or 0))
        result = scan(args.reference / "model", data, args.out / f"case-{i}.json",
                      args.scan_options)
        print(json.dumps({"case": case, "options": args.scan_options, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
