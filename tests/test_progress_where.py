"""Plain progress lines name what they work on (the probe and domain), for CI logs."""

from __future__ import annotations

from s2l_scan.progress import PlainProgress, at, where


def test_plain_lines_inside_at_name_the_probe_and_domain() -> None:
    lines: list[str] = []
    clock = iter([0.0, 1.0, 2.0, 3.0]).__next__
    show = PlainProgress(lines.append, interval=10, clock=clock, stamp=lambda: "12:00")
    with at("noise probe, domain identity-1"):
        assert where() == "noise probe, domain identity-1"
        show("scoring the shaken copy", 0, 2)
        show("scoring the shaken copy", 2, 2)
    show("scoring the released model", 0, 2)
    assert lines == ["[12:00] scoring the shaken copy [noise probe, domain identity-1] 0/2",
                     "[12:00] scoring the shaken copy [noise probe, domain identity-1] 2/2 "
                     "(100%) done in 0:01",
                     "[12:00] scoring the released model 0/2"]
    assert where() == ""


def test_each_probe_and_domain_starts_its_own_stage() -> None:
    lines: list[str] = []
    show = PlainProgress(lines.append, interval=10, clock=lambda: 0.0, stamp=lambda: "t")
    for domain in ("a", "b"):
        with at(f"lora probe, domain {domain}"):
            show("fine-tuning (steps)", 0, 100)
    assert lines == ["[t] fine-tuning (steps) [lora probe, domain a] 0/100",
                     "[t] fine-tuning (steps) [lora probe, domain b] 0/100"]
