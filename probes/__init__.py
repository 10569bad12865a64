"""Shake-to-Leak probes (shipped as ``s2l_scan.probes``).

Importing this package registers every built-in probe in :data:`s2l_scan.probe.PROBES`:
noise shaking here, the fine-tuning methods in :mod:`s2l_scan.probes.methods`.
"""

from s2l_scan.probes import noise

try:  # the fine-tuning methods land in their own sub-package
    from s2l_scan.probes import methods
except ImportError:  # pragma: no cover - only while methods/ is being written
    methods = None

__all__ = ["methods", "noise"]
