"""The statistics of design-space comparison (Radosavovic et al., NDS), on plain arrays.

A population is an array of errors (lower is better) with an array of complexities (params or MACs).
:func:`nds_weights` gives each member the weight that makes the compared populations' complexity
distributions equal: the pooled complexities are cut into equal-frequency bins (on a log scale), a bin
counts only where every population has members, and inside each population every counted bin gets the
same total weight, shared equally by its members. Every other function takes those weights (``None``:
equal weights): the weighted EDF, the two-sample Kolmogorov-Smirnov statistic with a permutation p-value
(labels permuted, weights recomputed each time, so the test is exact under exchangeability for any
weighting), bootstrap bands, the mean difference at matched complexity with its bootstrap interval, the
NDS sample-size check and the expected best of k random samples. Nothing here knows about runs.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

Array = np.ndarray


def default_bins(sizes: Sequence[int]) -> int:
    """Complexity bins for populations of these sizes: about sqrt(n)/1.5 of the smallest, between 2 and 10."""
    return int(min(10, max(2, round(math.sqrt(min(sizes)) / 1.5))))


def bin_edges(complexities: Sequence[Array], bins: int) -> Array:
    """Equal-frequency edges of the pooled log complexities (inner edges only; ``bins - 1`` of them, deduplicated)."""
    pooled = np.log(np.concatenate([np.asarray(c, float) for c in complexities]))
    inner = np.quantile(pooled, np.linspace(0, 1, bins + 1)[1:-1]) if bins > 1 else np.array([])
    return np.unique(inner)


def _bin_index(c: Array, edges: Array) -> Array:
    return np.searchsorted(edges, np.log(np.asarray(c, float)), side="right")


def nds_weights(complexities: Sequence[Array], bins: Optional[int] = None,
                edges: Optional[Array] = None) -> list[Array]:
    """Per population, weights summing to 1 that give every complexity bin populated in all of them the same weight.

    Members of a bin that some population lacks get weight 0 (no like-for-like partner exists). Raises
    ValueError when no bin is shared (the populations' complexities do not overlap)."""
    cs = [np.asarray(c, float) for c in complexities]
    if any(len(c) == 0 for c in cs):
        raise ValueError("an empty population has no EDF")
    if np.any(np.concatenate(cs) <= 0):
        raise ValueError("complexities must be positive (params or MACs)")
    if edges is None:
        edges = bin_edges(cs, bins or default_bins([len(c) for c in cs]))
    idx = [_bin_index(c, edges) for c in cs]
    nb = len(edges) + 1
    counts = np.array([np.bincount(i, minlength=nb) for i in idx])
    shared = np.all(counts > 0, axis=0)
    if not shared.any():
        raise ValueError("the populations share no complexity bin (their complexities do not overlap)")
    out = []
    for i, cnt in zip(idx, counts):
        w = np.where(shared[i], 1.0 / np.maximum(cnt[i], 1), 0.0)
        out.append(w / w.sum())
    return out


def _norm(w: Optional[Array], n: int) -> Array:
    w = np.full(n, 1.0 / n) if w is None else np.asarray(w, float)
    return w / w.sum()


def edf(errors: Array, weights: Optional[Array] = None, at: Optional[Array] = None) -> tuple[Array, Array]:
    """The weighted EDF: (x, F(x)) at the sorted errors, or F at the points ``at`` (right-continuous)."""
    e = np.asarray(errors, float)
    w = _norm(weights, len(e))
    order = np.argsort(e, kind="stable")
    xs, cum = e[order], np.cumsum(w[order])
    if at is None:
        return xs, np.minimum(cum, 1.0)
    pos = np.searchsorted(xs, np.asarray(at, float), side="right")
    return np.asarray(at, float), np.where(pos > 0, cum[np.maximum(pos - 1, 0)], 0.0).clip(0, 1)


def ks_statistic(a: Array, b: Array, wa: Optional[Array] = None, wb: Optional[Array] = None) -> float:
    """sup_x |F_a(x) - F_b(x)| of two weighted EDFs."""
    grid = np.union1d(a, b)
    return float(np.max(np.abs(edf(a, wa, grid)[1] - edf(b, wb, grid)[1])))


def ks_test(a: Array, b: Array, ca: Optional[Array] = None, cb: Optional[Array] = None, *, bins: Optional[int] = None,
            edges: Optional[Array] = None, shared: Optional[Array] = None, permutations: int = 2000,
            seed: int = 0) -> dict[str, float]:
    """Two-sample KS of errors ``a`` and ``b``, complexity-normalised when complexities ``ca``/``cb`` are given (on
    ``edges`` and ``shared`` bins when given, e.g. those of a larger comparison; else the pair's own).

    The p-value is a permutation test: the pooled members are relabelled at random (sizes kept), the weights
    recomputed on the same bins, and p = (1 + #{D* >= D}) / (1 + permutations)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    normalise = ca is not None and cb is not None
    if normalise:
        ca, cb = np.asarray(ca, float), np.asarray(cb, float)
        if edges is None:
            edges = bin_edges([ca, cb], bins or default_bins([len(a), len(b)]))
        if shared is None:
            shared = shared_bins([ca, cb], edges)
        if not shared.any():
            raise ValueError("the populations share no complexity bin (their complexities do not overlap)")
        wa, wb = _weights_on(ca, edges, shared), _weights_on(cb, edges, shared)
    else:
        wa = wb = None
    d = ks_statistic(a, b, wa, wb)
    rng = np.random.default_rng(seed)
    pooled_e = np.concatenate([a, b])
    pooled_c = np.concatenate([ca, cb]) if normalise else None
    hits = 0
    for _ in range(permutations):
        perm = rng.permutation(len(pooled_e))
        ia, ib = perm[:len(a)], perm[len(a):]
        if normalise:
            pa, pb = _weights_on(pooled_c[ia], edges, shared), _weights_on(pooled_c[ib], edges, shared)
        else:
            pa = pb = None
        hits += ks_statistic(pooled_e[ia], pooled_e[ib], pa, pb) >= d - 1e-12
    n_eff = [1.0 / float(np.sum(np.square(_norm(w, len(x))))) for w, x in ((wa, a), (wb, b))]
    return {"statistic": d, "p_value": (1 + hits) / (1 + permutations), "permutations": permutations,
            "n": [len(a), len(b)], "n_effective": n_eff}


def bootstrap_band(errors: Array, complexities: Optional[Array], edges: Optional[Array], shared: Optional[Array],
                   grid: Array, *, level: float = 0.9, resamples: int = 1000, seed: int = 0) -> tuple[Array, Array]:
    """Pointwise ``level`` band of the (normalised) EDF on ``grid``: members resampled with replacement; with
    complexities, each resample is reweighted on the same edges and shared bins."""
    e = np.asarray(errors, float)
    rng = np.random.default_rng(seed)
    curves = np.empty((resamples, len(grid)))
    for r in range(resamples):
        i = rng.integers(0, len(e), len(e))
        w = None if complexities is None else _weights_on(np.asarray(complexities, float)[i], edges, shared)
        curves[r] = edf(e[i], w, grid)[1]
    lo, hi = np.quantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def shared_bins(complexities: Sequence[Array], edges: Array) -> Array:
    """Which bins (by index) every population populates."""
    nb = len(edges) + 1
    counts = np.array([np.bincount(_bin_index(c, edges), minlength=nb) for c in complexities])
    return np.all(counts > 0, axis=0)


def _weights_on(c: Array, edges: Array, shared: Array) -> Optional[Array]:
    """One population's NDS weights on fixed edges and shared bins (a resample may miss a bin: the rest renormalise)."""
    idx = _bin_index(c, edges)
    cnt = np.bincount(idx, minlength=len(edges) + 1)
    w = np.where(shared[idx], 1.0 / np.maximum(cnt[idx], 1), 0.0)
    return w / w.sum() if w.sum() > 0 else np.full(len(c), 1.0 / len(c))


def mean_difference(a: Array, b: Array, wa: Optional[Array] = None, wb: Optional[Array] = None, *,
                    ca: Optional[Array] = None, cb: Optional[Array] = None, edges: Optional[Array] = None,
                    shared: Optional[Array] = None, level: float = 0.9, resamples: int = 2000,
                    seed: int = 0) -> dict[str, float]:
    """Weighted mean of ``a`` minus that of ``b`` (at matched complexity when weighted), with a bootstrap interval
    and the bootstrap probability that the difference is below zero (``a`` better, errors being lower-better)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(np.dot(_norm(wa, len(a)), a) - np.dot(_norm(wb, len(b)), b))
    rng = np.random.default_rng(seed)
    boots = np.empty(resamples)
    for r in range(resamples):
        ia, ib = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        if ca is not None and cb is not None:
            pa, pb = _weights_on(np.asarray(ca)[ia], edges, shared), _weights_on(np.asarray(cb)[ib], edges, shared)
        else:
            pa = pb = None
        boots[r] = np.dot(_norm(pa, len(ia)), a[ia]) - np.dot(_norm(pb, len(ib)), b[ib])
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": diff, "lo": float(lo), "hi": float(hi), "level": level,
            "p_a_better": float(np.mean(boots < 0))}


def dominance(a: Array, b: Array, wa: Optional[Array] = None, wb: Optional[Array] = None) -> dict[str, object]:
    """Where one EDF lies above the other (more members below each error level: the better population there).

    ``dominant``: 'a' or 'b' when its EDF is nowhere below the other's (first-order stochastic dominance), else
    'crossing'; ``a_above``: the share of the pooled error range where F_a > F_b; ``crossings``: error levels
    where the sign of F_a - F_b changes."""
    grid = np.union1d(a, b)
    d = edf(a, wa, grid)[1] - edf(b, wb, grid)[1]
    width = np.diff(grid)
    span = float(grid[-1] - grid[0]) or 1.0
    above = float(np.sum(width[d[:-1] > 1e-12]) / span) if len(grid) > 1 else 0.0
    below = float(np.sum(width[d[:-1] < -1e-12]) / span) if len(grid) > 1 else 0.0
    sign = np.sign(np.where(np.abs(d) < 1e-12, 0, d))
    nz = [(x, s) for x, s in zip(grid, sign) if s != 0]
    crossings = [float(nz[i][0]) for i in range(1, len(nz)) if nz[i][1] != nz[i - 1][1]]
    dominant = "a" if below == 0 and above > 0 else "b" if above == 0 and below > 0 else \
        "equal" if above == below == 0 else "crossing"
    return {"dominant": dominant, "a_above": above, "b_above": below, "crossings": crossings}


def best_of_k(errors: Array, weights: Optional[Array] = None, ks: Optional[Sequence[int]] = None,
              level: float = 0.9) -> list[dict[str, float]]:
    """Random-search efficiency: the expected minimum error of k draws from the (weighted) EDF, with replacement,
    and its ``level`` interval, exactly: P(min <= x) = 1 - (1 - F(x))^k."""
    xs, cum = edf(errors, weights)
    n = len(xs)
    ks = list(ks) if ks is not None else [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if k <= max(n, 1)]
    prev = np.concatenate([[0.0], cum[:-1]])
    out = []
    for k in ks:
        g, gprev = 1 - (1 - cum) ** k, 1 - (1 - prev) ** k
        mean = float(np.sum(xs * (g - gprev)))
        lo = float(xs[np.searchsorted(g, (1 - level) / 2 - 1e-12)])
        hi = float(xs[min(n - 1, np.searchsorted(g, (1 + level) / 2 - 1e-12))])
        out.append({"k": int(k), "expected_best": mean, "lo": lo, "hi": hi})
    return out


def sample_size_check(errors: Array, weights: Optional[Array] = None, sizes: Optional[Sequence[int]] = None,
                      repeats: int = 200, seed: int = 0) -> list[dict[str, float]]:
    """NDS's sample-size study: KS of the EDF of a random subsample of m members (weights kept, renormalised)
    against the EDF of all of them, mean and 90th percentile over ``repeats`` subsamples, per m."""
    e = np.asarray(errors, float)
    w = _norm(weights, len(e))
    n = len(e)
    sizes = list(sizes) if sizes is not None else [m for m in (4, 8, 16, 32, 64, 128, 256, 512) if m < n]
    rng = np.random.default_rng(seed)
    out = []
    for m in sizes:
        stats = []
        for _ in range(repeats):
            i = rng.choice(n, m, replace=False)
            if w[i].sum() <= 0:
                continue
            stats.append(ks_statistic(e[i], e, w[i], w))
        if stats:
            out.append({"m": int(m), "ks_mean": float(np.mean(stats)), "ks_p90": float(np.quantile(stats, 0.9)),
                        "of": n})
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values tested together (family-wise error), in their input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def rank_correlation(x: Array, y: Array) -> dict[str, float]:
    """Kendall's tau and Spearman's rho of two measurements of the same members, with their p-values."""
    from scipy import stats

    tau = stats.kendalltau(x, y)
    rho = stats.spearmanr(x, y)
    return {"kendall_tau": float(tau.statistic), "kendall_p": float(tau.pvalue), "spearman": float(rho.statistic),
            "spearman_p": float(rho.pvalue), "n": int(len(x))}
