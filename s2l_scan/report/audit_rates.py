"""What the null and leak audits' summaries say of their rates, for the renderers: the caveat
every interval carries, and why a check kind has no rate. Kept here (the report floor) so the
console renders an audit without importing the audit's runner; :mod:`s2l_scan.null_audit`
re-exports these names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CI_CAVEAT = "draws dependent: re-splits of one pool"
"""How every rate's Clopper–Pearson 95 % interval is labelled: the draws re-split one pool of
images (and can repeat a split), so they are not independent and the interval is not exact."""

LEAK_CI_CAVEAT = "draws dependent: subsets of one pool"
"""The leak audit's label of the same caveat: its draws subsample one pool of members and
non-members (at n = the pool's size, every draw holds the same images)."""

NOT_GATED = "not gated at this n"


def distinct_splits(draws: Sequence[Any]) -> int:
    """How many different splits (over all domains) the draws laid out: at small n two
    draws can give the same split, and then they tested the same sets."""
    return len({draw.splits for draw in draws})


def kind_status(draws: Sequence[Any], kind: str) -> str:
    """Why a kind has no rate: ``not gated at this n`` (made, but never able to fail) or
    ``not checked`` (no scan made it)."""
    made = any(d.made_by_kind.get(kind, d.checks_by_kind.get(kind, 0)) for d in draws)
    return NOT_GATED if made else "not checked"
