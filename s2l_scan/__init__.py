"""s2l-scan: a release gate for diffusion-model privacy (membership inference, extraction, S2L)."""

__version__ = "0.1.0"
