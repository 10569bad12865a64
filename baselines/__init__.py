"""Attacks on the checkpoint as released (shipped as ``s2l_scan.baselines``).

Importing this package registers every built-in attack in :data:`s2l_scan.attack.ATTACKS`.
"""

from s2l_scan.baselines import clid, loss, pia, secmi

__all__ = ["clid", "loss", "pia", "secmi"]
