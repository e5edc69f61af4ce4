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
from jax import lax

from jaxloop.model.tiling import distinct_children, rank_extents


def permute(x, perm, axis=-1):
    """x in the order perm along `axis` (x[perm[k]] per k), by selects over the D candidates:
    a gather is a scalar loop on CPUs, this is vector code."""
    return sum(jnp.where(perm == d, lax.index_in_dim(x, d, axis % x.ndim), 0) for d in range(x.shape[axis]))


def inverse(perm, axis=-1):
    """The inverse permutation along `axis`: each entry's place in perm (a sort costs more on CPUs)."""
    D = perm.shape[axis]
    k = lax.broadcasted_iota(perm.dtype, perm.shape, axis % perm.ndim)
    return jnp.stack([jnp.where(perm == d, k, 0).sum(axis) for d in range(D)], axis=axis)


def loop_table(temporal, perm, E_sp):
    """Per loop in nest order (batch-last [L, K, B], level-major, innermost first): bound and
    stride; and each dimension's place in its level's loop order [L, D, B]."""
    return permute(temporal, perm, 1), permute(E_sp, perm, 1), inverse(perm, 1)


def stationary_fills(tile, rel, temporal, position):
    """Non-sliding fills [L, B] = tile x product of the loop bounds above l from the first
    relevant non-trivial loop outward (inside it the tile stays resident, delta 0).

    Batch-last: tile [L, B], temporal and position [L, D, B]. Per level only the loops ahead of
    its first relevant loop depend on the order; `position` is each dimension's place in its
    level's permutation (innermost first)."""
    L, D, B = temporal.shape
    rel_nt = jnp.asarray(rel)[None, :, None] & (temporal > 1)  # [L, D, B]
    first = jnp.min(jnp.where(rel_nt, position, D), axis=1)  # first relevant loop's place
    ahead = jnp.prod(jnp.where(position < first[:, None], temporal, 1.0), axis=1)  # resident run
    full = jnp.prod(temporal, axis=1)  # [L, B]
    has_rel = rel_nt.any(axis=1)
    out = [jnp.ones(B, tile.dtype)]  # top level: nothing above
    acc = jnp.ones(B, tile.dtype)  # product over levels above the current one
    run = jnp.ones(B, tile.dtype)  # answer for the boundary just below level m
    for m in range(L - 1, 0, -1):
        run = jnp.where(has_rel[m], full[m] / ahead[m] * acc, run)
        acc = acc * full[m]
        out.append(run)
    return tile * jnp.stack(out[::-1], axis=0)


def sliding_fills(tile, E_bnd, ranks, n, v, perm, boundaries):
    """Fills of a sliding tensor [L, B]: Timeloop's delta + stride rule replayed in closed form
    (tile [L, B]; E_bnd [L, D, B]; n, v, perm [L, K, B] from loop_table).

    Timeloop walks each outer loop at iterations 0 and 1 (weight bound-1), so a level's
    boundary sees the odometer S_k = S_{k-1}, step tau_k, S_{k-1}. The stride state is null or
    the last non-zero translation credited; a zero step changes nothing, a step equal to the
    state (or from null) is credited with the overlap, any other step refetches the whole tile
    and clears the state. S_k depends on its input only through "null or equal to its first
    non-zero step" (class C) vs "anything else" (class X), and ends in null or its last non-zero
    step, so two sums and two flags per class carry the recursion. Each of `boundaries` (levels
    that can hold data) runs one scan over the loops above it. Translations are small integers,
    exact in float32; the weighted sums are float64. The carry is batch-last ([..., B]): on CPUs
    every operation then runs along the long axis.
    """
    L, D, B = n.shape
    bnd = np.asarray(boundaries)
    if bnd.size == 0:
        return tile
    R = len(ranks)
    f32 = jnp.float32

    def step(carry, x, t_b, ext):
        W, started, out_c, out_x, sum_c, sum_x, first, last = carry
        dim, nn, vv = x  # [B] each
        vv = vv.astype(f32)
        # this loop's move along each rank, and the translation from the inner loops' offset W [R, B]
        move = jnp.stack([sum(jnp.where(dim == d, c * vv, 0.0) for d, c in r) for r in ranks])
        tau = move - W
        ov = jnp.prod(jnp.maximum(0, ext - jnp.abs(tau)), axis=0).astype(jnp.float64)  # [B]
        dc = t_b - ov  # delta when the translation is credited
        zero = (tau == 0).all(0)
        eq_l = (tau == last).all(0)
        l_eq_f = (last == first).all(0)
        w = nn - 1
        new = []
        for s1_last in (out_c, out_x):
            d = jnp.where(zero, 0.0, jnp.where(s1_last & ~eq_l, t_b, dc))
            to_c = jnp.where(zero | s1_last, ~(s1_last & ~l_eq_f) | (~zero & ~eq_l), (tau == first).all(0))
            new.append((w * (d + jnp.where(to_c, sum_c, sum_x)), jnp.where(to_c, out_c, out_x)))
        (add_c, o_c), (add_x, o_x) = new
        active = nn > 1
        begin = active & ~started & ~zero
        general = active & started
        sum_c = jnp.where(begin, w * dc, jnp.where(general, sum_c + add_c, sum_c))
        sum_x = jnp.where(begin, w * t_b, jnp.where(general, sum_x + add_x, sum_x))
        out_c = jnp.where(begin, True, jnp.where(general, o_c, out_c))
        out_x = jnp.where(begin, False, jnp.where(general, o_x, out_x))
        first = jnp.where(begin, tau, first)
        last = jnp.where(begin, tau, last)
        W = W + jnp.where(active, move, 0.0)
        return (W, started | begin, out_c, out_x, sum_c, sum_x, first, last), None

    zb, zr = jnp.zeros(B, bool), jnp.zeros((R, B), f32)
    fills = []
    for b in bnd:  # one scan per boundary over every loop above it, level-major, innermost first
        t_b = tile[b]
        ext = jnp.stack([rank_extents(E_bnd[b], r, axis=0) for r in ranks]).astype(f32)  # [R, B]
        carry = (zr, zb, zb, zb, jnp.zeros(B), jnp.zeros(B), zr, zr)
        xs = tuple(x[b + 1:].reshape(-1, B) for x in (perm, n, v))
        carry, _ = jax.lax.scan(lambda c, x: step(c, x, t_b, ext), carry, xs)
        fills.append(t_b + carry[4])
    return tile.at[bnd].set(jnp.stack(fills))


def accesses(static, temporal, spatial, perm, keep, E_bnd, E_below, E_sp, tile, part):
    """Per-instance reads, fills, updates [L, T, B] after bypass routing and read-modify-write,
    and the temporal iterations t_total [B].

    Batch-last throughout (temporal, spatial, perm, E_* [L, D, B]; keep, tile, part [L, T, B]):
    on CPUs each step is then a contiguous vector operation instead of a strided slice. keep
    must already be False where static.keepable is (the kernel's status flags it)."""
    L, D, B = temporal.shape
    n, v, position = loop_table(temporal, perm, E_sp)
    t_total = jnp.prod(temporal.reshape(-1, B), axis=0)
    reads, fills, updates = [], [], []
    for t, ranks in enumerate(static.ranks):
        if static.sliding(t):
            bnd = tuple(l for l in range(L - 1) if static.keepable[l][t])
            f_raw = sliding_fills(tile[:, t], E_bnd, ranks, n, v, perm, bnd)
        else:
            f_raw = stationary_fills(tile[:, t], static.relevant(t), temporal, position)
        distinct = distinct_children(spatial, E_below, ranks)  # [L, B]
        kt = keep[:, t]
        # Content accesses: what each level serves to the nearest keeper below it (MaskTiles).
        ca = [t_total * distinct[0]]
        for l in range(1, L):
            ca.append(distinct[l] * jnp.where(kt[l - 1], f_raw[l - 1], ca[-1]))
        ca = jnp.stack(ca)
        kept_above = [jnp.zeros(B, bool)]  # is there a keeper above level l?
        for l in range(L - 1, 0, -1):
            kept_above.append(kept_above[-1] | kt[l])
        top = kt & ~jnp.stack(kept_above[::-1])
        p = part[:, t]
        if static.read_write[t]:
            upd, rd, fl = ca, ca - p, jnp.where(top, 0.0, f_raw - p)
        else:
            upd, rd, fl = jnp.zeros_like(ca), ca, jnp.where(top, 0.0, f_raw)
        reads.append(jnp.where(kt, rd, 0.0))
        fills.append(jnp.where(kt, fl, 0.0))
        updates.append(jnp.where(kt, upd, 0.0))
    return jnp.stack(reads, axis=1), jnp.stack(fills, axis=1), jnp.stack(updates, axis=1), t_total
