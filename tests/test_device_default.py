"""--device auto is the default, and a GPU left idle is warned about."""

from __future__ import annotations

import pytest
import torch

from s2l_scan.config import ScanConfig
from s2l_scan.devices import idle_gpu_note


def test_the_default_device_is_auto() -> None:
    assert ScanConfig().device == "auto"


def test_a_cpu_scan_on_a_machine_with_a_gpu_is_warned_about(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    note = idle_gpu_note("cpu")
    assert note is not None and "2 CUDA GPU(s)" in note and "--device auto" in note


def test_no_warning_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert idle_gpu_note("cpu") is None and idle_gpu_note("auto") is None


def test_the_warning_is_printed_before_a_scan(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from s2l_scan import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cli._warn_idle_gpu("cpu")
    assert "s2l-scan: warning: this machine has 1 CUDA GPU(s)" in capsys.readouterr().err
