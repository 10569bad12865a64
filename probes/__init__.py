"""Shake-to-Leak probes (shipped as ``s2l_scan.probes``)."""
