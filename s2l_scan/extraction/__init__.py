"""Extraction (README, probes): find generations that reproduce known (training) images.

:mod:`s2l_scan.extraction.index` retrieves candidates from a FAISS index of known images and
verifies them exactly with :mod:`s2l_scan.functional.eidetic`, so the indexed answer equals the
brute-force one.
"""
