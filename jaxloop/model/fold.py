"""Reductions over short static axes (levels, dimensions, dataspaces) as chains of elementwise
operations. XLA's CPU reductions cost ~1.5 ns per element, its fused elementwise operations
~0.15: over an axis of a few entries the chain is ~10x cheaper, and its order is fixed (first
entry first), so float sums do not depend on the backend's reduction order. The result is
materialized, as a reduction's is: left fusible, XLA would recompute the chain in every consumer."""

import functools

import jax.numpy as jnp
from jax import lax


def _fold(op, x, axis=None):
    if axis is None:  # a sequence of arrays
        xs = list(x)
    else:
        axis = axis % x.ndim
        xs = [lax.index_in_dim(x, i, axis, keepdims=False) for i in range(x.shape[axis])]
    return lax.optimization_barrier(functools.reduce(op, xs))


# each takes (x, axis) and drops the axis, or a sequence of equal-shape arrays (x alone)
total = functools.partial(_fold, jnp.add)
product = functools.partial(_fold, jnp.multiply)
largest = functools.partial(_fold, jnp.maximum)
smallest = functools.partial(_fold, jnp.minimum)
any_of = functools.partial(_fold, jnp.logical_or)
all_of = functools.partial(_fold, jnp.logical_and)
