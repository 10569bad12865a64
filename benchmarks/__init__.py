"""Benchmarks of s2l-scan (outside the test suite): ``python -m benchmarks [--quick]``."""
