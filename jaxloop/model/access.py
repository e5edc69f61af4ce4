"""Reads, fills and updates per level and dataspace (Timeloop's legacy nest analysis, closed form).

Fills of level l are the deltas of its tile as the temporal loops above it advance. Timeloop
simulates iterations 0 and 1 of every loop and weights iteration 1 by (bound - 1); a tile
that moves with a different translation than last time is refetched whole (stride rule).
For non-sliding tensors this collapses to tile x (product of the loops from the first
relevant one outward); for sliding tensors each loop above the level adds a weighted delta
(sliding_fills), also in closed form.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxloop.model import fold
from jaxloop.model.tiling import distinct_children, rank_extents


def permute(x, perm, axis=-1):
    """x in the order perm along `axis` (x[perm[k]] per k), by selects over the D candidates:
    a gather is a scalar loop on CPUs, this is vector code."""
    return sum(jnp.where(perm == d, lax.index_in_dim(x, d, axis % x.ndim), 0) for d in range(x.shape[axis]))


def inverse(perm, axis=-1, of=None):
    """The inverse permutation along `axis`: each entry's place in perm (a sort costs more on CPUs);
    `of`: only these entries' places (default all)."""
    D = perm.shape[axis]
    k = lax.broadcasted_iota(perm.dtype, perm.shape, axis % perm.ndim)
    return jnp.stack([fold.total(jnp.where(perm == d, k, 0), axis) for d in (range(D) if of is None else of)],
                     axis=axis)


def stationary_fills(tile, rel, temporal, position, full, places):
    """Non-sliding fills [L, B] = tile x product of the loop bounds above l from the first
    relevant non-trivial loop outward (inside it the tile stays resident, delta 0).

    Batch-last: tile and full (product of each level's temporal bounds) [L, B], temporal and
    position [L, D, B]. Per level only the loops ahead of
    its first relevant loop depend on the order; `position` is each dimension's place in its
    level's permutation (innermost first), out of `places`."""
    L, D, B = temporal.shape
    rel_nt = jnp.asarray(rel)[None, :, None] & (temporal > 1)  # [L, D, B]
    first = fold.smallest(jnp.where(rel_nt, position, places), 1)  # first relevant loop's place
    ahead = fold.product(jnp.where(position < first[:, None], temporal, 1.0), 1)  # resident run
    has_rel = fold.any_of(rel_nt, 1)
    out = [jnp.ones(B, tile.dtype)]  # top level: nothing above
    acc = jnp.ones(B, tile.dtype)  # product over levels above the current one
    run = jnp.ones(B, tile.dtype)  # answer for the boundary just below level m
    for m in range(L - 1, 0, -1):
        run = jnp.where(has_rel[m], full[m] / ahead[m] * acc, run)
        acc = acc * full[m]
        out.append(run)
    return tile * jnp.stack(out[::-1], axis=0)


def sliding_fills(tile, E_bnd, E_sp, temporal, position, full, ranks, boundaries, places):
    """Fills of a sliding tensor [L, B]: Timeloop's delta + stride rule in closed form (batch-last:
    tile and full [L, B]; E_bnd, E_sp, temporal and position [L, D, B]).

    Timeloop walks each loop above a boundary at iterations 0 and 1 and weights iteration 1 by
    bound - 1, so the boundary sees the odometer S_k = S_{k-1}, step tau_k, S_{k-1} over the
    loops k in nest order. Step k's translation tau_k (per rank) is loop k's own move minus the
    moves of the active loops inside it, which return to iteration 0. The stride state is set
    by the first non-zero step and a later step is credited with the overlap only when it
    equals that first one; a zero step costs nothing and any other step refetches the tile.
    So with d_k = 0 (tau_k = 0), tile - overlap(tau_k) (tau_k = the first non-zero tau) or tile
    (otherwise), the fills are tile + sum_k (bound_k - 1) d_k prod_{j > k} bound_j: no scan,
    every loop at once. Loops are indexed by (level, dimension); a loop's place in the nest is
    its level and its position in the level's permutation. Translations are small integers,
    exact in float32; the sums are exact integers in float64.
    """
    L, D, B = temporal.shape
    if not boundaries:
        return tile
    f32, f64 = jnp.float32, jnp.float64
    all_of = lambda xs: functools.reduce(jnp.logical_and, xs)  # noqa: E731
    lo = min(boundaries) + 1  # only the loops above the lowest boundary matter
    temporal, position, full, U = temporal[lo:], position[lo:], full[lo:], L - lo
    # each active loop's move along its dimension, materialized once for the terms below
    step = lax.optimization_barrier(jnp.where(temporal > 1, E_sp[lo:], 0.0).astype(f32))
    # Stacks would be concatenations, which XLA's CPU backend emits with a branch per element:
    # per-level terms are broadcast against a level iota and masked instead.
    level = lax.broadcasted_iota(jnp.int32, (U, 1, 1), 0)
    outer = functools.reduce(jnp.multiply, [jnp.where(level < m, full[m], 1.0) for m in range(1, U)], 1.0)
    outer = outer * fold.product(jnp.stack(  # bounds of the loops outside loop (l, d) [U, D, B]
        [jnp.where(position[:, e, None] > position, temporal[:, e, None], 1.0) for e in range(D)]), 0)
    gain = lax.optimization_barrier((temporal - 1) * outer)  # weight of loop (l, d)'s delta
    key = level * places + position  # nest order of loop (l, d)
    fills = tile
    for b in boundaries:
        lv = slice(b + 1 - lo, U)
        # moves of the active loops at levels b+1 .. l-1, inside every loop of level l [L-b-1, D, B]
        below = lax.optimization_barrier(sum((jnp.where(level[lv] > m, step[m], 0.0)
                                              for m in range(b + 1 - lo, U - 1)), jnp.zeros((D, B), f32)))
        tau = []  # per rank, translation of loop (l, d): its own move minus the inner loops' moves
        for r in ranks:
            x = 0.0
            for e, c in r:
                inner = jnp.where(position[lv, e, None] < position[lv], step[lv, e, None], 0.0)
                own = jnp.where(lax.broadcasted_iota(jnp.int32, (D, 1), 0) == e, step[lv, e, None], -inner)
                x = x + c * (own - below[:, e, None])
            tau.append(lax.optimization_barrier(x))
        zero = lax.optimization_barrier(all_of([x == 0 for x in tau]))
        k = jnp.where((temporal[lv] > 1) & ~zero, key[lv], U * places)
        first_k = fold.smallest(fold.smallest(k, 1), 0)  # the first non-zero step, in nest order
        at_first = lax.optimization_barrier(k == first_k)
        first = [fold.total(fold.total(jnp.where(at_first, x, 0.0), 1), 0) for x in tau]
        eq = all_of([x == f for x, f in zip(tau, first)])
        ext = [rank_extents(E_bnd[b], r, axis=0) for r in ranks]
        overlap = functools.reduce(jnp.multiply, [jnp.maximum(0.0, e - jnp.abs(x).astype(f64))
                                                  for e, x in zip(ext, tau)])
        t_b = tile[b]
        delta = jnp.where(zero, 0.0, jnp.where(eq, t_b - overlap, t_b))
        fills = fills.at[b].add(fold.total(fold.total(gain[lv] * delta, 1), 0))
    return fills


def accesses(static, temporal, spatial, position, keep, E_bnd, E_below, E_sp, tile, part, places=None):
    """Per-instance reads, fills, updates [L, T, B] after bypass routing and read-modify-write,
    and the temporal iterations t_total [B].

    Batch-last throughout (temporal, spatial, E_* [L, D, B]; position: each dimension's place in
    its level's loop order [L, D, B]; keep, tile, part [L, T, B]):
    on CPUs each step is then a contiguous vector operation instead of a strided slice. keep
    must already be False where static.keepable is (the kernel's status flags it). `places`: loop
    places per level (default D; more when the kernel leaves out dimensions of bound 1)."""
    L, D, B = temporal.shape
    places = D if places is None else places
    full = fold.product(temporal, 1)  # [L, B] iterations of each level's temporal loops
    t_total = fold.product(full, 0)
    reads, fills, updates = [], [], []
    for t, ranks in enumerate(static.ranks):
        if static.sliding(t):
            bnd = tuple(l for l in range(L - 1) if static.keepable[l][t])
            f_raw = sliding_fills(tile[:, t], E_bnd, E_sp, temporal, position, full, ranks, bnd, places)
        else:
            f_raw = stationary_fills(tile[:, t], static.relevant(t), temporal, position, full, places)
        distinct = distinct_children(spatial, E_below, ranks)  # [L, B]
        kt = keep[:, t]
        # Content accesses: what each level serves to the nearest keeper below it (MaskTiles).
        ca = [t_total * distinct[0]]
        for l in range(1, L):
            ca.append(distinct[l] * jnp.where(kt[l - 1], f_raw[l - 1], ca[-1]))
        ca = jnp.stack(lax.optimization_barrier(ca))  # each level in its own buffer, not recomputed per element
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
