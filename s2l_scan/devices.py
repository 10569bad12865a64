"""The torch device and dtype a scan's options name, checked to be usable here."""

from __future__ import annotations

import os

import torch

from s2l_scan.errors import UsageError

DEVICE_KINDS = ("cpu", "cuda", "mps")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``dtype`` option (one of :data:`s2l_scan.config.DTYPES`)."""
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def resolve_device(device: str) -> str:
    """The torch device a ``device`` option names, checked to be usable here.

    ``"auto"`` is a CUDA GPU when one is visible, else ``"mps"`` when available, else ``"cpu"``.
    ``cuda`` without an index is this process's local GPU under a data-parallel launcher
    (``LOCAL_RANK``), else GPU 0. A device that is unknown or absent is a usage error.
    """
    if device == "auto":
        device = ("cuda" if torch.cuda.is_available() else
                  "mps" if torch.backends.mps.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_KINDS:
        raise UsageError(f"device {device!r} is not one of {', '.join(DEVICE_KINDS)}, cuda:N "
                         "or auto; pass e.g. --device cpu (pytest: --s2l-device=cpu)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("device 'mps' is not available on this machine; pass --device cpu "
                         "or --device auto")
    if parsed.type != "cuda":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(os.environ.get("LOCAL_RANK", "0")) % max(1, count) if parsed.index is None \
        else parsed.index
    if index >= count:
        raise UsageError(f"device {device!r}: this machine has {count} CUDA GPU(s) visible to "
                         "torch; pass --device cpu, --device auto or an index below the count")
    return f"cuda:{index}"


def idle_gpu_note(device: str) -> str | None:
    """A warning when ``device`` resolves to the CPU although torch sees a CUDA GPU here.

    An SD-1.5 scan takes days on a CPU and well under an hour on a GPU (README, "What a scan
    costs"): a GPU left idle by ``--device cpu`` is worth one line before the scan starts.
    """
    if resolve_device(device) != "cpu" or not torch.cuda.is_available():
        return None
    return (f"warning: this machine has {torch.cuda.device_count()} CUDA GPU(s) but the scan "
            f"runs on the CPU (device {device!r}); pass --device auto or --device cuda "
            "(pytest: --s2l-device=auto) to use it")
