"""Power of the gate's checks (docs/verdict-maths.md, "Power"): the smallest AUC / Δ a scan of
this size detects, the images a no-signal model needs to PASS, and the images that would
decide an inconclusive check.

The calibrated AUC's law is modelled exactly in shape: with one candidate, its two half AUCs
a and b (centred on ½) are independent (disjoint samples), each Normal(AUC − ½, s²) with s² the
Hanley–McNeil variance at the half's sizes, and the calibrated AUC is
½ + (sgn(a)·b + sgn(b)·a)/2 (each half oriented by the other). Its law is integrated on a
fixed grid, so the learned direction's cost (null SD 1.28× the fixed-sign one; light tails:
the 99 % quantile at 2.0 SD, not 2.33) is in every number. Several candidates and the
within-domain minP over many rows are not modelled (both make the real test weaker).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from s2l_scan.functional.metrics import MetricInputError

__all__ = [
    "calibrated_auc_law",
    "calibrated_power",
    "critical_auc",
    "images_for_pass",
    "images_to_decide",
    "minimum_detectable_auc",
    "minimum_detectable_delta",
]

FloatArray = npt.NDArray[np.float64]

_GRID = 241  # points per axis of the (a, b) quadrature grid, ±8 SD (801 moved MDEs < 1e-3)
_MAX_IMAGES = 1_000_000

# Fitted on the simulated null distribution of auc_upper_bound (200 draws at each of 32, 64,
# 128, 256 per class; docs/verdict-maths.md): sqrt(n)·(bound − ½) has its 80th percentile at
# this value, roughly constant in n.
_PASS_SCALE_80 = 1.20


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
        raise MetricInputError(f"{name} must be an integer ≥ 2, got {value!r}")
    return int(value)


def _probability(value: float, name: str) -> float:
    number = float(value)
    if not 0.0 < number < 1.0:
        raise MetricInputError(f"{name} must be in (0, 1), got {value!r}")
    return number


def _hanley_mcneil(true_auc: float, n1: int, n0: int) -> float:
    """Hanley–McNeil variance of the Mann–Whitney AUC at n1 members / n0 non-members."""
    a = min(max(true_auc, 1e-9), 1 - 1e-9)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)


_ERF = np.vectorize(math.erf, otypes=[np.float64])


def _normal_cdf(x: FloatArray) -> FloatArray:
    result: FloatArray = 0.5 * (1.0 + _ERF(x / math.sqrt(2.0)))
    return result


def calibrated_auc_law(true_auc: float, n_members: int, n_nonmembers: int,
                       ) -> tuple[FloatArray, FloatArray]:
    """(values, weights) of the calibrated AUC's law on the quadrature grid (weights sum to
    1), values sorted ascending."""
    n1, n0 = _positive_int(n_members, "n_members"), _positive_int(n_nonmembers, "n_nonmembers")
    halves = ((n1 // 2, n0 // 2), (n1 - n1 // 2, n0 - n0 // 2))
    axes = []
    for h1, h0 in halves:
        sd = math.sqrt(_hanley_mcneil(true_auc, h1, h0))
        edges = (true_auc - 0.5) + sd * np.linspace(-8, 8, _GRID + 1)
        mass = np.diff(_normal_cdf(edges / sd - (true_auc - 0.5) / sd))
        axes.append(((edges[1:] + edges[:-1]) / 2, mass / mass.sum()))
    (a, wa), (b, wb) = axes
    values = 0.5 + (np.sign(a)[:, None] * b[None, :] + np.sign(b)[None, :] * a[:, None]) / 2
    weights = wa[:, None] * wb[None, :]
    order = np.argsort(values, axis=None, kind="stable")
    return values.ravel()[order], weights.ravel()[order]


def critical_auc(n_members: int, n_nonmembers: int, level: float) -> float:
    """The calibrated AUC a null model exceeds with probability ``level``."""
    values, weights = calibrated_auc_law(0.5, n_members, n_nonmembers)
    tail = np.cumsum(weights[::-1])[::-1]  # P(T ≥ values[i])
    return float(values[int(np.searchsorted(-tail, -level, side="right"))])


def calibrated_power(true_auc: float, n_members: int, n_nonmembers: int, level: float,
                     critical: float | None = None) -> float:
    """P(calibrated AUC > the null's ``level`` critical value) at ``true_auc``."""
    if critical is None:
        critical = critical_auc(n_members, n_nonmembers, level)
    values, weights = calibrated_auc_law(true_auc, n_members, n_nonmembers)
    return float(weights[values > critical].sum())


def _floor_blocks(n_members: int, n_nonmembers: int, alpha: float, family_size: int) -> bool:
    """Whether the permutation test's attainable p (family.attainable_pvalue) times the
    family size exceeds alpha: then no AUC is detectable."""
    from s2l_scan.functional.family import attainable_pvalue

    return attainable_pvalue(n_members, n_nonmembers) * family_size > alpha


def minimum_detectable_auc(n_members: int, n_nonmembers: int, alpha: float = 0.05,
                           family_size: int = 1, power: float = 0.8) -> float | None:
    """The smallest true AUC whose calibrated AUC reaches Bonferroni/Holm's first-step level
    alpha / family_size with probability ``power``; None when the permutation floor makes
    the check unable to fail at all."""
    if isinstance(family_size, bool) or not isinstance(family_size, int) or family_size < 1:
        raise MetricInputError(f"family_size must be an integer ≥ 1, got {family_size!r}")
    level = _probability(alpha, "alpha") / family_size
    target = _probability(power, "power")
    if _floor_blocks(n_members, n_nonmembers, alpha, family_size):
        return None
    critical = critical_auc(n_members, n_nonmembers, level)
    low, high = 0.5, 0.9999
    if calibrated_power(high, n_members, n_nonmembers, level, critical) < target:
        return None
    for _ in range(16):  # to 1e-5
        middle = (low + high) / 2
        if calibrated_power(middle, n_members, n_nonmembers, level, critical) < target:
            low = middle
        else:
            high = middle
    return high


def _z(p: float) -> float:
    from s2l_scan.functional.family import _normal_quantile

    return _normal_quantile(p)


def minimum_detectable_delta(n_members: int, n_nonmembers: int, released_auc: float = 0.6,
                             margin: float = 0.05, alpha: float = 0.05, family_size: int = 1,
                             power: float = 0.8, correlation: float = 0.5) -> float:
    """The smallest Δ (probe − released calibrated AUC) that the margin test rejects at
    alpha / family_size with probability ``power``: margin + (z_level + z_power)·SD(Δ̂), SD
    from the calibrated AUC's law at the released AUC and the rows' ``correlation``
    (normal approximation; the percentile bootstrap test is more conservative, see docs)."""
    values, weights = calibrated_auc_law(released_auc, n_members, n_nonmembers)
    mean = float(np.sum(values * weights))
    variance = float(np.sum(weights * (values - mean) ** 2))
    sd = math.sqrt(2 * variance * (1 - float(correlation)))
    level = _probability(alpha, "alpha") / max(1, int(family_size))
    return float(margin) + (_z(1 - level) + _z(_probability(power, "power"))) * sd


def images_for_pass(max_auc: float = 0.6, confidence: float = 0.95,
                    power: float = 0.8) -> int:
    """Images per class at which a model with no signal PASSES (auc_upper_bound ≤ max_auc)
    with probability ``power``: n = (c / (max_auc − ½))², c fitted on simulated bounds at
    confidence 0.95, power 0.8 (other levels scale c by their normal quantiles)."""
    if not 0.5 < float(max_auc) < 1.0:
        raise MetricInputError(f"max_auc must be in (0.5, 1), got {max_auc!r}")
    scale = _PASS_SCALE_80 * (_z(_probability(confidence, "confidence")) + _z(power) - _z(0.8)) \
        / _z(0.95)
    return _pass_images(scale, float(max_auc) - 0.5)


def _pass_images(scale: float, gap: float) -> int:
    """n with scale / sqrt(n) ≤ gap (a last-bit slack: (1.2 / 0.1)² is 144.00000000000003)."""
    return max(2, math.ceil((scale / gap) ** 2 * (1 - 1e-12)))


def images_to_decide(observed_auc: float, n_members: int, n_nonmembers: int,
                     max_auc: float = 0.6, alpha: float = 0.05,
                     family_size: int = 1) -> int | None:
    """Images per class that would decide an inconclusive check if the true AUC were the
    observed one: to FAIL (observed > max_auc) the n whose minimum detectable AUC is at most
    the observed; to PASS (observed < max_auc) the n whose bound clears max_auc with 80 %
    probability. None when it never decides (observed = max_auc) or past a million."""
    _positive_int(n_members, "n_members"), _positive_int(n_nonmembers, "n_nonmembers")
    observed = float(observed_auc)
    if observed < 0.5:
        observed = 1.0 - observed  # the attacker learns the direction
    if abs(observed - max_auc) < 1e-9:
        return None
    if observed < max_auc:
        need = _pass_images(_PASS_SCALE_80, max_auc - observed)
        return need if need <= _MAX_IMAGES else None
    low, high = 4, 8
    while True:
        mde = minimum_detectable_auc(high, high, alpha, family_size)
        if mde is not None and mde <= observed:
            break
        low, high = high, high * 2
        if high > _MAX_IMAGES:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        mde = minimum_detectable_auc(middle, middle, alpha, family_size)
        low, high = (low, middle) if mde is not None and mde <= observed else (middle, high)
    return high
