"""Shake-to-Leak probes (shipped as ``s2l_scan.probes``).

Importing this package registers every built-in probe in :data:`s2l_scan.probe.PROBES`:
noise shaking here, the fine-tuning methods in :mod:`s2l_scan.probes.methods`.
"""

from s2l_scan.probes import methods, noise

__all__ = ["methods", "noise"]
