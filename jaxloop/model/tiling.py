"""Tile extents, footprints, partition sizes and spatial distinctness (Timeloop's AAHR rules).

Arrays carry dimensions on `axis` (default last); the kernel runs batch-last ([L, D, B]) so that
every step is a contiguous vector operation on CPUs, the sparse terms batch-first ([B, L, D])."""

import jax.numpy as jnp
from jax import lax


def footprint(E, ranks, axis=-1):
    """Bounding-box size of a dataspace over iteration extents E (dimensions on `axis`, holes included)."""
    size = 1.0
    for r in ranks:
        size = size * rank_extents(E, r, axis)
    return size * jnp.ones_like(lax.index_in_dim(E, 0, axis % E.ndim, keepdims=False))


def rank_extents(E, rank, axis=-1):
    ext = 1.0
    for d, c in rank:
        ext = ext + c * (lax.index_in_dim(E, d, axis % E.ndim, keepdims=False) - 1)
    return ext * jnp.ones_like(lax.index_in_dim(E, 0, axis % E.ndim, keepdims=False))


def extents(temporal, spatial, axis=1):
    """E_bnd: extent of every dim over all loops of levels <= l (the level-l boundary), levels on
    `axis`; E_below: the same below level l (its children's tiles); E_sp: E_below times level-l spatial."""
    f = temporal * spatial
    acc = [lax.index_in_dim(f, 0, axis)]
    for l in range(1, f.shape[axis]):  # unrolled: XLA's cumprod is an O(L^2) reduce-window on CPUs
        acc.append(acc[-1] * lax.index_in_dim(f, l, axis))
    acc = lax.optimization_barrier(acc)  # each level's product in its own buffer: no per-element branches
    E_bnd = jnp.concatenate(acc, axis=axis)
    E_below = jnp.concatenate([jnp.ones_like(acc[0]), *acc[:-1]], axis=axis)
    return E_bnd, E_below, E_below * spatial


def distinct_children(spatial, E_below, ranks):
    """Number of distinct child tiles of tensor `ranks` among the spatial children of each level
    (batch-last: spatial, E_below [L, D, B] -> [L, B]).

    Timeloop groups children whose deltas are equal (exact multicast). Children differing only
    in irrelevant dims coincide; on a sliding rank W = a*i + b*j two spatial dims can also
    coincide (the sumset of two arithmetic progressions: n1*n2 - (n1-b')(n2-a') collisions).
    Collisions need both spatial factors above 1; the gcds of all sliding ranks are taken in one
    call (see gcd).
    """
    out = jnp.ones((spatial.shape[0], spatial.shape[2]), spatial.dtype)
    pairs = []
    for r in ranks:
        if len(r) == 1:
            out = out * spatial[:, r[0][0]]
        else:
            (d1, c1), (d2, c2) = r
            pairs.append((spatial[:, d1], spatial[:, d2], c1 * E_below[:, d1], c2 * E_below[:, d2]))
    if pairs:
        both = [(p[0] > 1) & (p[1] > 1) for p in pairs]  # elsewhere gcd(a, 0) = a: no step to take
        g = gcd(jnp.stack([p[2] for p in pairs]), jnp.stack([jnp.where(m, p[3], 0.0) for p, m in zip(pairs, both)]))
        for (n1, n2, a, b), gi, m in zip(pairs, g, both):
            dup = jnp.where(m, jnp.maximum(0, n1 - b / gi) * jnp.maximum(0, n2 - a / gi), 0.0)
            out = out * (n1 * n2 - dup)
    return out


def gcd(a, b, unrolled=4):
    """Greatest common divisor of non-negative integer-valued floats (exact while a + b < 2**53).

    Euclid's steps with float division (AVX2 has no integer division; jnp.gcd's integer
    remainder runs a scalar loop): a few steps unrolled as plain vector code, then a loop for
    whatever has not converged, whose test reads the whole array once per step."""
    def step(ab):
        a, b = ab
        live = b != 0
        d = jnp.where(live, b, 1.0)
        return jnp.where(live, b, a), jnp.where(live, a - jnp.floor(a / d) * d, 0.0)

    a, b = lax.optimization_barrier((a, b))
    for _ in range(unrolled):  # each step in its own buffers: XLA would recompute the chain per use
        a, b = lax.optimization_barrier(step((a, b)))
    return lax.while_loop(lambda ab: jnp.any(ab[1] != 0), step, (a, b))[0]


def partitions(tile, spread, fanout):
    """Distinct elements an instance ever holds [L, T, B] (tile, spread [L, T, B]: footprints over
    each level's tile and over its spatial fan-out; fanout [L, B] used): P[L-1] = whole tensor,
    P[c] = P[c+1] * tile[c] // den[c], den[c] = spread[c+1] below a used fan-out, else tile[c]."""
    L = tile.shape[0]
    parts = [tile[L - 1]]
    for c in range(L - 2, -1, -1):
        den = jnp.where(fanout[c + 1] > 1, spread[c + 1], tile[c])
        parts.append(jnp.floor(parts[-1] * tile[c] / den))  # C++ integer division
    # each level's result in its own buffer: the stack would otherwise recompute the chain
    return jnp.stack(lax.optimization_barrier(parts[::-1]), axis=0)
