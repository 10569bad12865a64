"""Attacks on the checkpoint as released (shipped as ``s2l_scan.baselines``)."""
