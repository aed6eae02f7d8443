"""A normal model for censored per-seed log ratios (Tobit; a lognormal accelerated-failure-
time model of the step ratio), compared with the report's interval in
bnexp/report/coverage.py -- not used by the report (bnexp/report/speedup.py says why).

Each paired seed's log ratio d = log T_none - log T_bn is modelled as normal(mu, sigma)
and known exactly, only from below (the `bn=none` run stopped first), only from above
(the BN run did) or not at all (dropped). mu and sigma are fitted by maximum likelihood,
Newton's method in Olsen's parameters delta = mu/sigma, gamma = 1/sigma, in which the
log-likelihood is concave (so Newton with step halving finds its maximum). The interval
is mu +- t(n-1) * se, se from the observed information scaled by n/(n-1): with nothing
censored that is the t interval on the per-seed log ratios exactly.
"""
from __future__ import annotations

import math

import numpy as np

ITERATIONS = 60


def log_likelihood(theta: np.ndarray, exact: np.ndarray, value: np.ndarray,
                   side: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood, gradient and Hessian in (delta, gamma), per experiment. `value`:
    the log ratio, or its bound; `side` +1 where d >= value, -1 where d <= value, 0 where
    exact or unknown (`exact` marks the exact ones)."""
    from scipy.special import log_ndtr
    delta, gamma = theta[..., 0:1], theta[..., 1:2]
    x = np.where(exact | (side != 0), value, 0.0)
    err = gamma * x - delta                                  # exact: the standardised value
    u = side * (delta - gamma * x)                           # censored: log P = log Phi(u)
    log_cdf = log_ndtr(u)
    h = np.exp(-0.5 * u * u - 0.5 * math.log(2 * math.pi) - log_cdf)   # phi(u) / Phi(u)
    dh = -h * (u + h)
    cens = side != 0
    ll = np.where(exact, np.log(gamma) - 0.5 * err ** 2, 0.0) + np.where(cens, log_cdf, 0.0)
    g_delta = np.where(exact, err, 0.0) + np.where(cens, h * side, 0.0)
    g_gamma = np.where(exact, 1 / gamma - err * x, 0.0) - np.where(cens, h * side * x, 0.0)
    h_dd = np.where(exact, -1.0, 0.0) + np.where(cens, dh, 0.0)
    h_dg = np.where(exact, x, 0.0) - np.where(cens, dh * x, 0.0)
    h_gg = np.where(exact, -1 / gamma ** 2 - x * x, 0.0) + np.where(cens, dh * x * x, 0.0)
    grad = np.stack([g_delta.sum(-1), g_gamma.sum(-1)], axis=-1)
    hess = np.stack([np.stack([h_dd.sum(-1), h_dg.sum(-1)], -1),
                     np.stack([h_dg.sum(-1), h_gg.sum(-1)], -1)], -2)
    return ll.sum(-1), grad, hess


def solve2(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix^-1 @ vector for a stack of symmetric 2x2 matrices (NaN where singular)."""
    a, b, d = matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 1]
    with np.errstate(all="ignore"):
        det = a * d - b * b
        return np.stack([d * vector[:, 0] - b * vector[:, 1],
                         a * vector[:, 1] - b * vector[:, 0]], -1) / det[:, None]


def newton_step(theta, current, exact, value, side):
    """One Newton step per row from `theta` (with `current` = its log-likelihood, gradient
    and Hessian), halved until gamma > 0 and the likelihood does not fall; rows where no
    such step is found keep theta."""
    ll, grad, hess = current
    step = -solve2(hess, grad)
    step = np.where(np.isfinite(step), step, 0.0)
    new_theta, new = theta.copy(), [a.copy() for a in current]
    todo, scale = np.arange(len(theta)), 1.0
    for _ in range(30):
        trial = theta[todo] + scale * step[todo]
        with np.errstate(all="ignore"):
            result = log_likelihood(trial, exact[todo], value[todo], side[todo])
        good = (trial[:, 1] > 0) & (result[0] >= ll[todo] - 1e-12)
        new_theta[todo[good]] = trial[good]
        for kept, computed in zip(new, result):
            kept[todo[good]] = computed[good]
        todo, scale = todo[~good], scale / 2
        if not len(todo):
            break
    return new_theta, new


def fit(exact: np.ndarray, value: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood mu and the variance of its estimate, per experiment (rows);
    NaN where it did not converge (e.g. fewer than two distinct exact values)."""
    known = exact | (side != 0)
    count = np.maximum(known.sum(-1), 1)
    mu = np.where(known, value, 0.0).sum(-1) / count
    sigma = np.sqrt(np.where(known, (value - mu[:, None]) ** 2, 0.0).sum(-1) / count)
    theta = np.stack([mu, np.ones_like(mu)], -1) / np.maximum(sigma, 1e-3)[:, None]
    ll, grad, hess = log_likelihood(theta, exact, value, side)
    active = np.arange(len(theta))
    for _ in range(ITERATIONS):  # only the rows not yet at their maximum
        active = active[~(np.abs(grad[active]).max(-1) < 1e-9)]
        if not len(active):
            break
        theta[active], (ll[active], grad[active], hess[active]) = newton_step(
            theta[active], (ll[active], grad[active], hess[active]),
            exact[active], value[active], side[active])
    delta, gamma = theta[:, 0], theta[:, 1]
    with np.errstate(all="ignore"):
        jac = np.stack([1 / gamma, -delta / gamma ** 2], -1)       # d mu / d(delta, gamma)
        var = (jac * solve2(-hess, jac)).sum(-1)                    # jac' (-H)^-1 jac
    converged = (np.abs(grad).max(-1) < 1e-6) & (var > 0) & np.isfinite(var)
    return np.where(converged, delta / gamma, np.nan), np.where(converged, var, np.nan)


def interval(low: np.ndarray, high: np.ndarray, min_seeds: int,
             confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The Tobit interval of the mean log ratio from per-seed bounds [low, high] (paired;
    rows: experiments): exact where low == high, censored where one end is infinite,
    dropped where both are. NaN where not fitted or fewer than `min_seeds` known seeds."""
    from scipy.stats import t as student_t
    exact = low == high
    side = np.where(exact, 0, np.where(np.isinf(high) & np.isfinite(low), 1,
                                       np.where(np.isinf(low) & np.isfinite(high), -1, 0)))
    value = np.where(side == 1, low, np.where(exact | (side == -1), high, 0.0))
    n = (exact | (side != 0)).sum(-1)
    mu, var = fit(exact, value, side)
    with np.errstate(all="ignore"):
        half = student_t.ppf(0.5 + confidence / 2, n - 1) * np.sqrt(var * n / (n - 1))
    shown = (n >= min_seeds) & np.isfinite(half)
    return np.where(shown, mu - half, np.nan), np.where(shown, mu + half, np.nan)
