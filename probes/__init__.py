"""Shake-to-Leak probes (shipped as ``s2l_scan.probes``).

Importing this package registers every built-in probe in :data:`s2l_scan.probe.PROBES`:
noise shaking here, the fine-tuning methods in :mod:`s2l_scan.probes.methods`, and the null
probe ``identity`` (selected only by name) that measures Δ's false-fail rate.
"""

from s2l_scan.probes import identity, methods, noise

__all__ = ["identity", "methods", "noise"]
