"""Across seeds: a statistic of the mean over seeds with a two-level (seeds, then identities)
bootstrap interval (:func:`two_level_bootstrap`, with :func:`contrast` and :func:`gain_share`),
and the t interval of a mean over seeds (:func:`seed_summary`)."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError


def two_level_bootstrap(per_seed: Sequence[Mapping[Any, np.ndarray]], statistic: Callable[[Mapping[Any, np.ndarray]], Any],
                        *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """A statistic of the mean over seeds, with a 95 % interval from a two-level bootstrap: seeds
    drawn with replacement, then, for every drawn seed, one of its identity-bootstrap replicates.

    ``per_seed``: one mapping per seed, ``{key: (B_s + 1,) values}`` — the value on the seed's full
    test list first, then its replicates (:func:`results_comparisons` ``replicates``); within a seed
    every key's replicate ``r`` must come from the same resample (paired). ``statistic`` maps
    ``{key: values}`` (arrays of the mean over seeds) to an array of the same shape: e.g.
    ``lambda v: v["lg"] - v["aug"]`` (:func:`contrast`) or a ratio of two differences
    (:func:`gain_share`). The point estimate is the statistic of the means of the full-list
    values. Two levels carry both sources of variation (another training run, other test
    identities); the inner level adds the test-set variance a second time (each seed's mean already
    varies by it), so the interval errs wide. A replicate where the statistic is not finite (a ratio
    over a zero gain) is dropped; ``n_valid`` says how many were kept.

    Returns ``{"estimate", "ci95", "se", "n_seeds", "n_boot", "n_valid", "seed", "per_seed"}``.
    """
    if not per_seed:
        raise DataFormatError("two_level_bootstrap: no seeds")
    keys = list(per_seed[0])
    for i, d in enumerate(per_seed):
        if set(d) != set(keys):
            raise DataFormatError(f"two_level_bootstrap: seed {i} has keys {sorted(map(str, d))}, seed 0 {sorted(map(str, keys))}")
        sizes = {np.asarray(v).shape for v in d.values()}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1 or next(iter(sizes))[0] < 2:
            raise DataFormatError(f"two_level_bootstrap: seed {i}: every key needs the same (B + 1,) values, "
                                  f"got shapes {sorted(sizes)}")
    if int(n_boot) < 1:
        raise ConfigError(f"two_level_bootstrap: n_boot must be >= 1, got {n_boot}")
    S = len(per_seed)
    rng = np.random.default_rng(seed)
    si = rng.integers(0, S, (int(n_boot), S))
    full = {k: np.array([float(np.asarray(d[k])[0]) for d in per_seed]) for k in keys}
    with np.errstate(divide="ignore", invalid="ignore"):
        est = float(np.asarray(statistic({k: v.mean() for k, v in full.items()})))
        per = [float(np.asarray(statistic({k: np.asarray(d[k])[0] for k in keys}))) for d in per_seed]
        means = {}
        nb = [np.asarray(d[keys[0]]).shape[0] - 1 for d in per_seed]
        ri = np.stack([rng.integers(1, nb[s] + 1, int(n_boot)) for s in range(S)], axis=1)  # replicate per seed slot
        for k in keys:
            table = [np.asarray(d[k], np.float64) for d in per_seed]
            vals = np.empty((int(n_boot), S))
            for s in range(S):  # slot s: seed si[:, s], its replicate ri[:, s] (bounded by that seed's B)
                for src in range(S):
                    sel = si[:, s] == src
                    vals[sel, s] = table[src][1 + (ri[sel, s] - 1) % nb[src]]
            means[k] = vals.mean(axis=1)
        stat = np.asarray(statistic(means), np.float64)
    ok = np.isfinite(stat)
    if not ok.any():
        return {"estimate": est, "ci95": None, "se": None, "n_seeds": S, "n_boot": int(n_boot), "n_valid": 0,
                "seed": int(seed), "per_seed": per}
    lo, hi = np.percentile(stat[ok], [2.5, 97.5])
    return {"estimate": est, "ci95": [float(lo), float(hi)], "se": float(np.std(stat[ok], ddof=1)) if ok.sum() > 1 else 0.0,
            "n_seeds": S, "n_boot": int(n_boot), "n_valid": int(ok.sum()), "seed": int(seed), "per_seed": per}


def contrast(a: Any, b: Any) -> Callable[[Mapping[Any, np.ndarray]], np.ndarray]:
    """The statistic ``B − A`` of :func:`two_level_bootstrap` (keys ``a``, ``b``)."""
    return lambda v: np.asarray(v[b]) - np.asarray(v[a])


def gain_share(base: Any, reference: Any, candidate: Any) -> Callable[[Mapping[Any, np.ndarray]], np.ndarray]:
    """The statistic ``(candidate − base) / (reference − base)`` of the means over seeds: e.g. the share of
    LG's M-U gain over the teacher that adapt reaches (a ratio of means, not a mean of ratios)."""
    def f(v: Mapping[Any, np.ndarray]) -> np.ndarray:
        den = np.asarray(v[reference]) - np.asarray(v[base])
        return np.where(den > 0, (np.asarray(v[candidate]) - np.asarray(v[base])) / np.where(den > 0, den, 1.0), np.nan)
    return f


# ----------------------------------------------------------------------------- across seeds
def _t_two_sided_prob(t: float, nu: int) -> float:
    """P(|T| < t) for Student's t with integer ``nu`` degrees of freedom (A&S 26.7.3/26.7.4)."""
    th = math.atan(t / math.sqrt(nu))
    c2, s = math.cos(th) ** 2, math.sin(th)
    if nu % 2:  # odd
        term, acc = 1.0, 1.0 if nu > 1 else 0.0
        for k in range(1, (nu - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            acc += term
        return (2.0 / math.pi) * (th + (s * math.cos(th) * acc if nu > 1 else 0.0))
    term, acc = 1.0, 1.0
    for k in range(1, nu // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        acc += term
    return s * acc


def t_quantile_975(nu: int) -> float:
    """The 97.5 % quantile of Student's t (bisection on the exact CDF; 1e-12 accurate)."""
    lo, hi = 0.0, 1000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided_prob(mid, nu) < 0.95 else (lo, mid)
    return (lo + hi) / 2


def seed_summary(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean and 95 % t-interval of per-seed differences (one value per independent seed).

    ``ci95 = mean ± t(0.975, n-1) · sd / sqrt(n)`` with the sample standard deviation (ddof 1):
    the seeds are treated as independent draws of the whole training run. With one seed the
    interval is undefined (``None``).
    """
    x = np.asarray(diffs, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise DataFormatError(f"seed_summary: expected a non-empty 1-D list of finite differences, got {diffs!r}")
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci95": None, "n": 1, "sd": None}
    sd = float(x.std(ddof=1))
    h = t_quantile_975(x.size - 1) * sd / math.sqrt(x.size)
    return {"mean": mean, "ci95": [mean - h, mean + h], "n": int(x.size), "sd": sd}
