"""Kernel helpers that replace XLA primitives with vector code: tiling.gcd (float Euclid) and the
fold reductions over short axes. Exact results, checked against Python on random inputs."""

import math

import jax.numpy as jnp
import numpy as np

import jaxloop  # noqa: F401  (64-bit floats)
from jaxloop.model import fold
from jaxloop.model.tiling import gcd


def test_gcd_equals_math_gcd():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 300, (2, 5000))
    big = rng.integers(1, 2**40, (2, 5000)) * rng.integers(1, 64, (1, 5000))  # shared factors, a + b < 2**53
    fib = np.array([[832040, 514229, 2**52, 0, 7], [514229, 317811, 3, 9, 0]])  # 28 Euclid steps; zeros
    for a, b in (small, big, fib):
        got = np.asarray(gcd(jnp.asarray(a, jnp.float64), jnp.asarray(b, jnp.float64)))
        assert got.tolist() == [math.gcd(int(x), int(y)) for x, y in zip(a, b)]


def test_folds_equal_reductions_in_order():
    rng = np.random.default_rng(1)
    x = rng.random((5, 7, 33))
    for axis in (0, 1, 2):
        xs = np.moveaxis(x, axis, 0)
        acc = xs[0]
        for row in xs[1:]:  # first entry first: the float sum is this one, bit for bit
            acc = acc + row
        assert np.array_equal(np.asarray(fold.total(jnp.asarray(x), axis)), acc)
        assert np.allclose(np.asarray(fold.product(jnp.asarray(x), axis)), x.prod(axis), rtol=1e-14)
        assert np.array_equal(np.asarray(fold.largest(jnp.asarray(x), axis)), x.max(axis))
        assert np.array_equal(np.asarray(fold.smallest(jnp.asarray(x), axis)), x.min(axis))
        assert np.array_equal(np.asarray(fold.any_of(jnp.asarray(x > 0.9), axis)), (x > 0.9).any(axis))
        assert np.array_equal(np.asarray(fold.all_of(jnp.asarray(x > 0.1), axis)), (x > 0.1).all(axis))
