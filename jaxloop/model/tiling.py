"""Tile extents, footprints, partition sizes and spatial distinctness (Timeloop's AAHR rules)."""

import jax.numpy as jnp


def footprint(E, ranks):
    """Bounding-box size of a dataspace over iteration extents E[..., D] (holes included)."""
    size = jnp.ones(E.shape[:-1], E.dtype)
    for r in ranks:
        size = size * rank_extents(E, r)
    return size


def rank_extents(E, rank):
    ext = jnp.ones(E.shape[:-1], E.dtype)
    for d, c in rank:
        ext = ext + c * (E[..., d] - 1)
    return ext


def extents(temporal, spatial):
    """E_bnd[b, l, d]: extent of dim d over all loops of levels <= l (the level-l boundary);
    E_below: the same below level l (its children's tiles); E_sp: E_below times level-l spatial."""
    f = temporal * spatial
    acc = [f[:, 0]]
    for l in range(1, f.shape[1]):  # unrolled: XLA's cumprod is an O(L^2) reduce-window on CPUs
        acc.append(acc[-1] * f[:, l])
    E_bnd = jnp.stack(acc, axis=1)
    E_below = jnp.concatenate([jnp.ones_like(E_bnd[:, :1]), E_bnd[:, :-1]], axis=1)
    return E_bnd, E_below, E_below * spatial


def distinct_children(spatial, E_below, ranks):
    """Number of distinct child tiles of tensor `ranks` among the spatial children of each level
    (batch-last: spatial, E_below [L, D, B] -> [L, B]).

    Timeloop groups children whose deltas are equal (exact multicast). Children differing only
    in irrelevant dims coincide; on a sliding rank W = a*i + b*j two spatial dims can also
    coincide (the sumset of two arithmetic progressions: n1*n2 - (n1-b')(n2-a') collisions).
    The gcds of all sliding ranks are taken in one call (jnp.gcd is a while loop).
    """
    out = jnp.ones((spatial.shape[0], spatial.shape[2]), spatial.dtype)
    pairs = []
    for r in ranks:
        if len(r) == 1:
            out = out * spatial[:, r[0][0]]
        else:
            (d1, c1), (d2, c2) = r
            pairs.append((spatial[:, d1], spatial[:, d2], (c1 * E_below[:, d1]).astype(jnp.int32),
                          (c2 * E_below[:, d2]).astype(jnp.int32)))
    if pairs:
        g = jnp.gcd(jnp.stack([p[2] for p in pairs]), jnp.stack([p[3] for p in pairs]))
        for (n1, n2, a, b), gi in zip(pairs, g):
            dup = jnp.maximum(0, n1 - (b // gi).astype(n1.dtype)) * jnp.maximum(0, n2 - (a // gi).astype(n2.dtype))
            out = out * (n1 * n2 - dup)
    return out


def partitions(tile, den):
    """Distinct elements an instance ever holds: P[L-1] = whole tensor, P[c] = P[c+1]*tile[c]//den[c]."""
    L = tile.shape[1]
    parts = [tile[:, L - 1]]
    for c in range(L - 2, -1, -1):
        parts.append(jnp.floor(parts[-1] * tile[:, c] / den[:, c]))  # C++ integer division
    return jnp.stack(parts[::-1], axis=1)
