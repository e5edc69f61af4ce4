"""Reads, fills and updates per level and dataspace (Timeloop's legacy nest analysis, closed form).

Fills of level l are the deltas of its tile as the temporal loops above it advance. Timeloop
simulates iterations 0 and 1 of every loop and weights iteration 1 by (bound - 1); a tile
that moves with a different translation than last time is refetched whole (stride rule).
For non-sliding tensors this collapses to tile x (product of the loops from the first
relevant one outward); sliding tensors run a small scan over the loops above the level.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model.tiling import distinct_children, footprint, rank_extents


def loop_table(temporal, perm, E_sp):
    """Per loop in nest order [B, L, D] (level-major, innermost first): bound and stride.
    A one-hot contraction instead of a gather: gathers are slow on CPUs."""
    onehot = (perm[..., None] == jnp.arange(perm.shape[-1])).astype(temporal.dtype)  # [B, L, D, D]
    n = jnp.einsum("bljd,bld->blj", onehot, temporal)
    v = jnp.einsum("bljd,bld->blj", onehot, E_sp)
    return n, v


def stationary_fills(tile, rel, n, perm):
    """Non-sliding fills[b, l] = tile x product of the loop bounds above l from the first
    relevant non-trivial loop outward (inside it the tile stays resident)."""
    B, L, D = n.shape
    rel_loop = (jnp.asarray(rel)[perm]) & (n > 1)
    flat_n = n.reshape(B, L * D)
    flat_rel = rel_loop.reshape(B, L * D)
    suffix = jnp.cumprod(flat_n[:, ::-1], axis=1)[:, ::-1]  # product of loops i..end
    g = jnp.ones(B, n.dtype)
    from_first = [None] * (L * D)  # product from the first relevant loop at or after i
    for i in range(L * D - 1, -1, -1):
        g = jnp.where(flat_rel[:, i], suffix[:, i], g)
        from_first[i] = g
    ones = jnp.ones(B, n.dtype)
    return tile * jnp.stack([from_first[(l + 1) * D] if l < L - 1 else ones for l in range(L)], axis=1)


def sliding_fills(tile, E_bnd, ranks, n, v, perm, boundaries):
    """Fills of a sliding tensor [B, L]: Timeloop's delta + stride rule replayed in closed form.

    Timeloop walks each outer loop at iterations 0 and 1 (weight bound-1), so a level's
    boundary sees the odometer S_k = S_{k-1}, step tau_k, S_{k-1}. The stride state is null or
    the last non-zero translation credited; a zero step changes nothing, a step equal to the
    state (or from null) is credited with the overlap, any other step refetches the whole tile
    and clears the state. S_k depends on its input only through "null or equal to its first
    non-zero step" (class C) vs "anything else" (class X), and ends in null or its last non-zero
    step, so two sums and two flags per class carry the recursion. Each loop advances the
    recursion of every boundary below it; only `boundaries` (levels that can hold data) are kept.
    Translations are small integers, exact in float32; the weighted sums are float64.
    """
    B, L, D = n.shape
    bnd = np.asarray(boundaries)
    if bnd.size == 0:
        return tile
    dims = sorted({d for r in ranks for d, _ in r})
    coef = np.zeros((len(dims), len(ranks)), np.float32)  # tau_r = sum_d coef[d, r] * tau_iter[d]
    for ri, r in enumerate(ranks):
        for d, c in r:
            coef[dims.index(d), ri] = c
    f32 = jnp.float32
    t_b = tile[:, bnd]
    ext = jnp.stack([rank_extents(E_bnd[:, bnd], r) for r in ranks], axis=-1).astype(f32)  # [B, K, R]
    K = bnd.size
    zb = jnp.zeros((B, K), bool)
    zr = jnp.zeros((B, K, len(ranks)), f32)
    carry = (jnp.zeros((B, K, len(dims)), f32), zb, zb, zb, jnp.zeros((B, K)), jnp.zeros((B, K)), zr, zr)
    dims_arr = jnp.asarray(dims)

    def step(carry, x, below):
        W, started, out_c, out_x, sum_c, sum_x, first, last = carry
        dim, nn, vv = x
        move = jnp.where(dim[:, None] == dims_arr[None, :], vv.astype(f32)[:, None], 0)  # [B, Dt]
        tau = jnp.einsum("bkd,dr->bkr", move[:, None, :] - W, coef)  # [B, K, R]
        ov = jnp.prod(jnp.maximum(0, ext - jnp.abs(tau)), axis=-1).astype(jnp.float64)
        dc = t_b - ov  # delta when the translation is credited
        zero = (tau == 0).all(-1)
        eq_l = (tau == last).all(-1)
        l_eq_f = (last == first).all(-1)
        w = (nn - 1)[:, None]
        new = []
        for s1_last in (out_c, out_x):
            d = jnp.where(zero, 0.0, jnp.where(s1_last & ~eq_l, t_b, dc))
            to_c = jnp.where(zero | s1_last, ~(s1_last & ~l_eq_f) | (~zero & ~eq_l), (tau == first).all(-1))
            new.append((w * (d + jnp.where(to_c, sum_c, sum_x)), jnp.where(to_c, out_c, out_x)))
        (add_c, o_c), (add_x, o_x) = new
        active = (nn > 1)[:, None] & below
        begin = active & ~started & ~zero
        general = active & started
        sum_c = jnp.where(begin, w * dc, jnp.where(general, sum_c + add_c, sum_c))
        sum_x = jnp.where(begin, w * t_b, jnp.where(general, sum_x + add_x, sum_x))
        out_c = jnp.where(begin, True, jnp.where(general, o_c, out_c))
        out_x = jnp.where(begin, False, jnp.where(general, o_x, out_x))
        first = jnp.where(begin[..., None], tau, first)
        last = jnp.where(begin[..., None], tau, last)
        W = W + jnp.where(active[..., None], move[:, None, :], 0)
        return (W, started | begin, out_c, out_x, sum_c, sum_x, first, last), None

    for m in range(1, L):
        below = jnp.asarray(bnd < m)
        if not bool((bnd < m).any()):
            continue
        xs = (perm[:, m].T, n[:, m].T, v[:, m].T)
        carry, _ = jax.lax.scan(lambda c, x: step(c, x, below), carry, xs)
    return tile.at[:, bnd].add(carry[4])


def accesses(static, temporal, spatial, perm, keep, E_bnd, E_below, E_sp, tile, part):
    """keep must already be False at levels that cannot store (static.storable)."""
    """Per-instance reads, fills, updates [B, L, T] after bypass routing and read-modify-write."""
    B, L, D = temporal.shape
    n, v = loop_table(temporal, perm, E_sp)
    t_total = jnp.prod(temporal.reshape(B, -1).astype(jnp.float64), axis=1)
    reads, fills, updates = [], [], []
    for t, ranks in enumerate(static.ranks):
        tl = tile[:, :, t].astype(jnp.float64)
        if static.sliding(t):
            bnd = tuple(l for l in range(L - 1) if static.storable[l])
            f_raw = sliding_fills(tl, E_bnd, ranks, n, v, perm, bnd)
        else:
            f_raw = stationary_fills(tl, static.relevant(t), n, perm)
        distinct = jnp.stack([distinct_children(spatial[:, l], E_below[:, l], ranks)
                              for l in range(L)], axis=1).astype(jnp.float64)
        kt = keep[:, :, t]
        # Content accesses: what each level serves to the nearest keeper below it (MaskTiles).
        ca = [t_total * distinct[:, 0]]
        for l in range(1, L):
            ca.append(distinct[:, l] * jnp.where(kt[:, l - 1], f_raw[:, l - 1], ca[-1]))
        ca = jnp.stack(ca, axis=1)
        above = jnp.flip(jnp.cumsum(jnp.flip(kt, 1), axis=1), 1) - kt  # keepers above each level
        top = kt & (above == 0)
        p = part[:, :, t].astype(jnp.float64)
        if static.read_write[t]:
            upd = ca
            rd = ca - p
            fl = jnp.where(top, 0.0, f_raw - p)
        else:
            upd = jnp.zeros_like(ca)
            rd = ca
            fl = jnp.where(top, 0.0, f_raw)
        reads.append(jnp.where(kt, rd, 0.0))
        fills.append(jnp.where(kt, fl, 0.0))
        updates.append(jnp.where(kt, upd, 0.0))
    st = lambda xs: jnp.stack(xs, axis=2)  # noqa: E731
    return st(reads), st(fills), st(updates), t_total
