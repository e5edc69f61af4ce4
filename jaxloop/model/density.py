"""Sparseloop density models as array ops: tile occupancy distributions over tile point counts.

Every query takes tile sizes `n` (number of coordinates, float64 arrays of any shape) and
answers elementwise (SPEC-sparse-analog A2):

* `pmf(n)` -> (k, p): occupancy values and their probabilities on a trailing axis,
* `p_empty(n)` = P(occupancy = 0),
* `p_empty_given(m, n, k)`: a sub-tile of m points inside a tile of n points known to hold
  exactly k non-zeros (Timeloop's "extra constraint") is empty,
* `max_occupancy(n)` at confidence 1 (capacity checks),
* `scalar_density()` = E[occupancy of one point].

`fixed_structured` (alias fixed, 2:4 = density 0.5): a tile of n points holds floor(n d) or
ceil(n d) non-zeros, the fraction randomised so the mean is exact; the float arithmetic is
Timeloop's (x = n * d in double), so rounding points land where Timeloop's do.

`hypergeometric`: the tensor of N points holds r = ceil(d N) non-zeros placed uniformly at
random; a tile's occupancy is Hypergeometric(N, r, n), evaluated in log space with lgamma.
Its support can be huge (a 230,400-point tile), so `pmf` uses a fixed grid of `grid` points:
exact when the support is at most that wide, otherwise points spaced over mean +- 12 sigma
(clipped to the support) with renormalised weights. Expectations of non-linear metadata
terms are then approximate (documented in the module sparse.py); P_empty is always exact.

`banded` is approximated by a hypergeometric model with the band's global density (the
exact per-position enumeration of Timeloop's banded model is not implemented).
"""

import jax.numpy as jnp
from jax.scipy.special import gammaln

GRID = 64


def _log_choose(a, b):
    return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(a - b + 1.0)


class Fixed:
    """fixed_structured(d)."""

    kind = "fixed_structured"

    def __init__(self, d, N=None):
        self.d = jnp.asarray(d, jnp.float64)

    @staticmethod
    def _two(x):
        fl, ce = jnp.floor(x), jnp.ceil(x)
        pc = x - fl
        same = fl == ce
        k = jnp.stack([fl, ce], axis=-1)
        p = jnp.stack([jnp.where(same, 1.0, 1.0 - pc), jnp.where(same, 0.0, pc)], axis=-1)
        return k, p

    @staticmethod
    def _empty(x):
        fl, ce = jnp.floor(x), jnp.ceil(x)
        return jnp.where(fl == 0, jnp.where(ce == 0, 1.0, 1.0 - (x - fl)), 0.0)

    def pmf(self, n):
        return self._two(n * self.d)

    def p_empty(self, n):
        return self._empty(n * self.d)

    def p_empty_given(self, m, n, k):
        cd = k / jnp.where(n > 0, n, 1.0)  # Timeloop: constrained density = k / n, then m * density
        return self._empty(m * cd)

    def max_occupancy(self, n):
        x = n * self.d
        return jnp.where(x - jnp.floor(x) == 0, jnp.floor(x), jnp.ceil(x))

    def scalar_density(self):
        return self.d


class Hypergeometric:
    """Hypergeometric(N, r = ceil(d N), n): uniformly random non-zeros in a tensor of N points."""

    kind = "hypergeometric"

    def __init__(self, d, N, grid=GRID):
        self.d = jnp.asarray(d, jnp.float64)
        self.N = jnp.asarray(N, jnp.float64)
        self.r = jnp.ceil(self.d * self.N)
        self.grid = grid

    def _logpmf(self, k, n, N, r):
        ok = (k >= jnp.maximum(0.0, n + r - N)) & (k <= jnp.minimum(n, r))
        kk = jnp.where(ok, k, 0.0)
        lp = _log_choose(r, kk) + _log_choose(N - r, jnp.maximum(n - kk, 0.0)) - _log_choose(N, n)
        return jnp.where(ok, lp, -jnp.inf)

    def pmf(self, n):
        N, r = self.N, self.r
        lo = jnp.maximum(0.0, n + r - N)
        hi = jnp.minimum(n, r)
        mean = n * r / jnp.maximum(N, 1.0)
        sd = jnp.sqrt(jnp.maximum(mean * (N - r) / jnp.maximum(N, 1.0) * (N - n) / jnp.maximum(N - 1.0, 1.0), 0.0))
        g = self.grid
        j = jnp.arange(g, dtype=jnp.float64)
        exact = hi - lo + 1 <= g
        a = jnp.where(exact, lo, jnp.maximum(lo, jnp.floor(mean - 12 * sd)))
        b = jnp.where(exact, lo + g - 1, jnp.minimum(hi, jnp.ceil(mean + 12 * sd)))
        k = jnp.where(exact[..., None], a[..., None] + j,
                      jnp.round(a[..., None] + j * (b - a)[..., None] / (g - 1)))
        lp = self._logpmf(k, n[..., None], N, r)
        dup = jnp.concatenate([jnp.zeros_like(k[..., :1], bool), k[..., 1:] == k[..., :-1]], axis=-1)
        p = jnp.where(dup, 0.0, jnp.exp(lp))
        p = jnp.where(exact[..., None], p, p / jnp.maximum(p.sum(-1, keepdims=True), 1e-300))
        return k, p

    def p_empty(self, n):
        N, r = self.N, self.r
        ok = n <= N - r
        return jnp.where(ok, jnp.exp(_log_choose(N - r, jnp.where(ok, n, 0.0)) - _log_choose(N, jnp.where(ok, n, 0.0))),
                         0.0)

    def p_empty_given(self, m, n, k):
        ok = m <= n - k
        m2 = jnp.where(ok, m, 0.0)
        return jnp.where(ok, jnp.exp(_log_choose(n - k, m2) - _log_choose(n, m2)), 0.0)

    def max_occupancy(self, n):
        return jnp.minimum(n, self.r)

    def scalar_density(self):
        return self.r / jnp.maximum(self.N, 1.0)


def model(kind, d, N, grid=GRID):
    """The density model of one dataspace. `kind` is static; d and N are traced scalars."""
    if kind in ("fixed_structured", "dense"):
        return Fixed(d)
    if kind in ("hypergeometric", "banded"):
        return Hypergeometric(d, N, grid)
    raise ValueError(f"unknown density model {kind!r}")
