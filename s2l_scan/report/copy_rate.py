"""The bound every renderer prints beside "0 extracted": how rare copies still may be.

"0 extracted of 32 generations" does not say the model never copies: by the one-sided 95%
Clopper–Pearson bound it says only that a generation copies a training image with probability
below 8.9%. Computed from the record's counts, so a report read back from JSON gets it too.
"""

from __future__ import annotations

from typing import Any

from s2l_scan.functional.views import clopper_upper


def extracted_cell(record: Any) -> str:
    """The "extracted" cell: the count, and with none the copy-rate bound, e.g.
    ``0 (copy rate < 8.9%)``."""
    if record.extracted or record.n_generated < 1:
        return str(record.extracted)
    bound = clopper_upper(min(record.matched_generations, record.n_generated),
                          record.n_generated)
    return f"0 (copy rate < {bound:.1%})"
