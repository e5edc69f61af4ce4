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
    """Per loop in nest order [B, L, D] (level-major, innermost first): bound and stride."""
    n = jnp.take_along_axis(temporal, perm, axis=2)
    v = jnp.take_along_axis(E_sp, perm, axis=2)
    return n, v


def stationary_fills(tile, rel, n, perm):
    """Non-sliding fills[b, l] = tile x product of loop bounds above l from the first relevant one."""
    B, L, D = n.shape
    rel_loop = jnp.asarray(rel)[perm] & (n > 1)  # [B, L, D]
    flat_n = n.reshape(B, L * D).astype(jnp.float64)
    flat_rel = rel_loop.reshape(B, L * D)
    excl = jnp.concatenate([jnp.ones((B, 1)), jnp.cumprod(flat_n, axis=1)], axis=1)  # [B, LD+1]
    idx = jnp.where(flat_rel, jnp.arange(L * D), L * D)
    nxt = jax.lax.cummin(idx, axis=1, reverse=True)  # next relevant loop at or after each position
    nxt = jnp.concatenate([nxt, jnp.full((B, 1), L * D)], axis=1)
    out = []
    for l in range(L):
        start = (l + 1) * D
        first = nxt[:, start]
        prefix_end = jnp.take_along_axis(excl, first[:, None], axis=1)[:, 0]
        out.append(tile[:, l] * excl[:, L * D] / prefix_end)
    return jnp.stack(out, axis=1)


def sliding_fills(tile, E_bnd, ranks, n, v, perm):
    """Fills of a sliding tensor [B, L]: Timeloop's delta + stride rule replayed in closed form.

    Timeloop walks each outer loop at iterations 0 and 1 (weight bound-1), so a level's
    boundary sees the odometer S_k = S_{k-1}, step tau_k, S_{k-1}. The stride state is null or
    the last non-zero translation credited; a zero step changes nothing, a step equal to the
    state (or from null) is credited with the overlap, any other step refetches the whole tile
    and clears the state. S_k depends on its input only through "null or equal to its first
    non-zero step" (class C) vs "anything else" (class X), and ends in null or its last non-zero
    step, so two sums and two flags per class carry the recursion. One scan over the loops
    (innermost first) advances the recursion of every level whose boundary lies below the loop.
    """
    B, L, D = n.shape
    R = len(ranks)
    dims = sorted({d for r in ranks for d, _ in r})
    coef = np.zeros((len(dims), R), np.int64)  # tau_r = sum_d coef[d, r] * tau_iter[d]
    for ri, r in enumerate(ranks):
        for d, c in r:
            coef[dims.index(d), ri] = c
    ext = jnp.stack([rank_extents(E_bnd, r) for r in ranks], axis=-1)  # [B, L, R]
    level_of = np.repeat(np.arange(L), D)
    xs = (perm.reshape(B, L * D).T, n.reshape(B, L * D).T, v.reshape(B, L * D).T,
          jnp.asarray(level_of[:, None] > np.arange(L)[None, :]))  # loop above boundary l?
    dims_arr = jnp.asarray(dims)
    zb = jnp.zeros((B, L), bool)
    zf = jnp.zeros((B, L))
    zr = jnp.zeros((B, L, R), E_bnd.dtype)
    init = (jnp.zeros((B, L, len(dims)), E_bnd.dtype), zb, zb, zb, zf, zf, zr, zr)

    def step(carry, x):
        W, started, out_c, out_x, sum_c, sum_x, first, last = carry
        dim, nn, vv, above = x
        move = jnp.where(dim[:, None] == dims_arr[None, :], vv[:, None], 0)  # [B, Dt]
        tau = jnp.einsum("bld,dr->blr", move[:, None, :] - W, coef)  # [B, L, R]
        ov = jnp.prod(jnp.maximum(0, ext - jnp.abs(tau)), axis=-1)
        dc = tile - ov  # delta when the translation is credited
        zero = (tau == 0).all(-1)
        eq_l = (tau == last).all(-1)
        eq_f = (tau == first).all(-1)
        l_eq_f = (last == first).all(-1)
        w = (nn - 1).astype(jnp.float64)[:, None]
        new = []
        for s1_last in (out_c, out_x):
            d = jnp.where(zero, 0.0, jnp.where(s1_last & ~eq_l, tile, dc))
            to_c = jnp.where(zero, ~s1_last | l_eq_f, jnp.where(s1_last, ~eq_l | l_eq_f, eq_f))
            new.append((w * (d + jnp.where(to_c, sum_c, sum_x)), jnp.where(to_c, out_c, out_x)))
        (add_c, o_c), (add_x, o_x) = new
        active = (nn > 1)[:, None] & above[None, :]
        begin = active & ~started & ~zero
        general = active & started
        sum_c = jnp.where(begin, w * dc, jnp.where(general, sum_c + add_c, sum_c))
        sum_x = jnp.where(begin, w * tile, jnp.where(general, sum_x + add_x, sum_x))
        out_c = jnp.where(begin, True, jnp.where(general, o_c, out_c))
        out_x = jnp.where(begin, False, jnp.where(general, o_x, out_x))
        first = jnp.where(begin[..., None], tau, first)
        last = jnp.where(begin[..., None], tau, last)
        W = W + jnp.where(active[..., None], move[:, None, :], 0)
        return (W, started | begin, out_c, out_x, sum_c, sum_x, first, last), None

    carry, _ = jax.lax.scan(step, init, xs)
    return tile + carry[4]


def accesses(static, temporal, spatial, perm, keep, E_bnd, E_below, E_sp, tile, part):
    """Per-instance reads, fills, updates [B, L, T] after bypass routing and read-modify-write."""
    B, L, D = temporal.shape
    n, v = loop_table(temporal, perm, E_sp)
    t_total = jnp.prod(temporal.reshape(B, -1).astype(jnp.float64), axis=1)
    reads, fills, updates = [], [], []
    for t, ranks in enumerate(static.ranks):
        tl = tile[:, :, t].astype(jnp.float64)
        if static.sliding(t):
            f_raw = sliding_fills(tl, E_bnd, ranks, n, v, perm)
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
