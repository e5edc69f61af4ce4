"""Spatial skipping (Sparseloop's `skipping_spatial`): fewer spatial instances do the work.

A level that fans out over a spatial loop can skip the children whose leader tile is empty:
the work of those children disappears, and, for structured sparsity, fewer children are needed
at all (2:4 on a 4-wide spatial loop needs 2). Timeloop computes this in three steps
(`storage-gs-analyzer.cpp`, read in docs/spatial_skipping.md); per mapping, here:

1. every dataspace with metadata at the first level at or above a fan-out level reduces its
   own instances below that level (InitializeSpatialInstances);
2. each `skipping_spatial` option (target T, leader C) at level s reduces T's instances below s
   from the leader's sparsity (CalculateSpatialOptimizationImpact);
3. the reductions are combined top-down (SummarizeAndPropagateSpatialCapacityReduction).

For one dataspace and one fan-out level the reduction is, over the level's spatial loops
innermost first (X loops, then Y loops; each in dimension order):

* efficiency eff = 1 - P_empty(the sub-tile inside the innermost relevant loop): the fraction
  of instances with work (the average utilized instances are replication x eff);
* every relevant loop of bound f shrinks its axis (X or Y) to n = the most non-empty elements
  a maximally full fiber of f elements can hold (fixed-structured 2:4 on f = 4: n = 2;
  uniform random: n = f unless the whole tensor has fewer non-zeros): the max expansion, which
  must fit the hardware fan-out.

For a target kept below s, a loop co-iterated by T and C sees the leader tile grown by the
temporal loops above it, irrelevant to T, up to T's first relevant one (T stays put there).

Combination, as Timeloop does it: a level's reduction reaches the inner levels only where it
changed the max expansion; there the inner expansions are scaled by the same ratio (truncated)
and the inner average ratios multiplied by the level's, down to a level with its own reduction.
The summary repeats this with the skipping targets, so a reduction at one level can reach a
level two below twice; we keep that (it is Timeloop's arithmetic, not ours to fix).

Departures: one leader per option (the parser refuses more; Timeloop's multi-leader loop
reuses a stale loop index); spatial loops of a level are taken X before Y, each in dimension
order (MappingBatch has no spatial permutation); GetMaxNumElementByConfidence is the generic
"ceil(f x P(element non-empty | the fiber holds its maximum))" with 1e-9 slack before the
ceiling (docs/spatial_skipping.md, U2).
"""

import jax.numpy as jnp
import numpy as np

from jaxloop.model.tiling import footprint


def _loops(sx, sy, E_below, s):
    """Level s's spatial loops, innermost first: [(axis 0 = X / 1 = Y, dim, bound [B], extents
    inside the loop [B, D])]."""
    D = sx.shape[2]
    sub = E_below[:, s]
    out = []
    for axis, fs in ((0, sx), (1, sy)):
        for d in range(D):
            f = fs[:, s, d]
            out.append((axis, d, f, sub))
            sub = sub * jnp.where(jnp.arange(D) == d, f[:, None], 1.0)
    return out


def _reduction(model, ranks, rel, on, loops, grow=None, co=None):
    """(eff [B], whether a loop is relevant [B], per loop (axis, applies [B], n [B], f [B])) of
    one dataspace's density model over one level's spatial loops. `on` [B]: the dataspace has
    metadata where the reduction is defined; `grow` [B, D] enlarges the sub-tile of loops over
    the co-iterated dimensions `co` (bool [D])."""
    B = on.shape[0]
    eff = jnp.ones((B,))
    found = jnp.zeros((B,), bool)
    steps = []
    for axis, d, f, sub in loops:
        if not rel[d]:
            continue
        if grow is not None and co[d]:
            sub = sub * grow
        r = on & (f > 1)
        el = footprint(sub, ranks)
        fiber = footprint(sub * jnp.where(jnp.arange(sub.shape[1]) == d, f[:, None], 1.0), ranks)
        eff = jnp.where(r & ~found, 1.0 - model.p_empty(el), eff)
        found = found | r
        k = model.max_occupancy(fiber)
        n = jnp.ceil(f * (1.0 - model.p_empty_given(el, fiber, k)) - 1e-9)
        steps.append((axis, r, jnp.clip(n, 1.0, f), f))
    return eff, found, steps


def _shrink(xy, steps):
    """Apply (axis, applies, n, f) steps to the (X, Y) expansion: X *= n / f on a uint64."""
    xy = list(xy)
    for axis, r, n, f in steps:
        xy[axis] = jnp.where(r, jnp.floor(xy[axis] * (n / f)), xy[axis])
    return xy


def first_keeper(keep_t, level):
    """First level >= `level` keeping the dataspace ([B]; L when none)."""
    B, L = keep_t.shape
    out = jnp.full((B,), L, jnp.int32)
    for l in range(L - 1, level - 1, -1):
        out = jnp.where(keep_t[:, l], l, out)
    return out


def _has_md(sp, t, lvl):
    """[B] whether dataspace t has a format (metadata) at level lvl [B] (False for L)."""
    L = len(sp.fanout)
    md = jnp.asarray([sp.format(l, t) is not None for l in range(L)] + [False])
    return md[lvl]


def _stationary_growth(nest, static, keep, s, target):
    """[B, D]: the temporal loops of levels s .. (the first level >= s keeping the target), from
    the innermost, that are irrelevant to the target, up to its first relevant one."""
    tl = first_keeper(keep[:, :, target], s)
    rel = np.array(static.relevant(target), bool)
    S = nest.slots(spatial=False)
    S = S[nest.level[S] >= s]
    rel_S, other_S = S[rel[nest.dim[S]]], S[~rel[nest.dim[S]]]
    cand = lambda k: (nest.level[k] <= tl) & (nest.bound[k] > 1)  # noqa: E731
    first_stop = nest.first([cand(k) for k in rel_S], rel_S)
    grow = [jnp.where(cand(k) & (nest.key[k] < first_stop), nest.bound[k], 1.0) for k in other_S]
    return nest.per_dim(grow, other_S).T


def _propagate(x, y, r, st_x, st_y, stop):
    """Timeloop's top-down propagation, in place, over architecture levels a = L .. 1: where level
    a's max expansion (x, y lists [B]) differs from storage a-1's (st_x, st_y, then updated), every
    inner level's expansion is scaled by the same ratios (uint64 truncation), and its average
    ratio r multiplied by level a's down to the first inner level b with stop[b] [B]."""
    for a in range(len(x) - 1, 0, -1):
        xr, yr = x[a] / st_x[a - 1], y[a] / st_y[a - 1]
        ch = (xr != 1.0) | (yr != 1.0)
        st_x[a - 1], st_y[a - 1] = jnp.where(ch, x[a], st_x[a - 1]), jnp.where(ch, y[a], st_y[a - 1])
        cross = jnp.zeros_like(ch)
        for b in range(a - 1, -1, -1):
            x[b], y[b] = jnp.where(ch, jnp.floor(x[b] * xr), x[b]), jnp.where(ch, jnp.floor(y[b] * yr), y[b])
            cross = cross | stop[b]
            r[b] = jnp.where(ch & ~cross, r[b] * r[a], r[b])


def analyse(sp, static, models, keep, child, nest, sx, sy, mac_inst, fanout_x, fanout_y):
    """Per mapping: storage utilized instances (average ratio [B, L, T], max [B, L, T]), MAC
    instances (max [B], average [B], truncated), the spatial-skipping mask and probability per
    (SAF level, target) [B, L, T] for the count eliminations, and the post-skipping fan-out
    check (X, Y) [B] that replaces the dense one; also the ratio and max X / Y of every
    architecture level (arch_ratio, arch_x, arch_y [B, L + 1, T]).

    A literal port of Timeloop's three steps, in its order of operations; lists are indexed by
    architecture level a (0 = compute, a = l + 1 = storage level l), whose instances come from
    the spatial loops of storage levels >= a."""
    B, L, T = keep.shape
    E_below = jnp.moveaxis(nest.E_below, -1, 0)  # [B, L, D]
    loops = {s: _loops(sx, sy, E_below, s) for s in range(L) if sp.fanout[s]}
    Fx, Fy = jnp.prod(sx, axis=2), jnp.prod(sy, axis=2)
    dense_x, dense_y = [jnp.ones((B,))], [jnp.ones((B,))]  # a = L first
    for a in range(L - 1, -1, -1):
        dense_x.append(dense_x[-1] * Fx[:, a])
        dense_y.append(dense_y[-1] * Fy[:, a])
    dense_x, dense_y = dense_x[::-1], dense_y[::-1]
    saf = {(s, tgt): ldr for s, tgt, ldr in sp.spatial_safs}
    smask = np.zeros((L, T), bool)  # Timeloop's dspace_optimization_masks_["spatial_skip"]
    for s, tgt, _ in sp.spatial_safs:
        smask[s, tgt] = True
    one = jnp.ones((B,))
    X, Y, R, orig = [], [], [], []
    for t in range(T):
        rel, ranks = np.array(static.relevant(t), bool), static.ranks[t]
        x, y, r = list(dense_x), list(dense_y), [one] * (L + 1)
        mask = [jnp.zeros((B,), bool)] * (L + 1)
        # InitializeSpatialInstances: a dataspace with metadata reduces its own instances
        for s in loops:
            on = _has_md(sp, t, first_keeper(keep[:, :, t], s))
            eff, _, steps = _reduction(models[t], ranks, rel, on, loops[s])
            x[s], y[s] = _shrink((x[s], y[s]), steps)
            r[s] = eff
            mask[s] = eff != 1.0
        st_x, st_y = list(dense_x[1:]), list(dense_y[1:])  # storage max_x/y_expansion
        _propagate(x, y, r, st_x, st_y, mask)
        # CalculateSpatialOptimizationImpact: the target's instances follow the leader's sparsity
        for s in range(L):
            if (s, t) not in saf:
                continue
            c = saf[(s, t)]
            on = _has_md(sp, c, first_keeper(keep[:, :, c], s))
            relC = np.array(static.relevant(c), bool)
            grow = jnp.where((child[:, s, t] >= 0)[:, None], _stationary_growth(nest, static, keep, s, t), 1.0)
            eff, _, steps = _reduction(models[c], static.ranks[c], relC, on, loops.get(s, ()), grow, rel & relC)
            x[s], y[s] = _shrink((x[s], y[s]), steps)
            r[s] = eff
        X.append(x), Y.append(y), R.append(r), orig.append((st_x, st_y))
    # SummarizeAndPropagateSpatialCapacityReduction: the same propagation against the storage
    # expansions InitializeSpatialInstances left, stopping above the levels with their own option
    for t in range(T):
        _propagate(X[t], Y[t], R[t], *orig[t], [jnp.full((B,), bool(smask[b, t])) for b in range(L)])
    ratio = jnp.stack([jnp.stack(r, 1) for r in R], 2)  # [B, L + 1, T]
    Xs = jnp.stack([jnp.stack(x, 1) for x in X], 2)
    Ys = jnp.stack([jnp.stack(y, 1) for y in Y], 2)
    fan = lambda E, hw: (jnp.floor(E[:, :-1] / E[:, 1:]) > hw[None, :, None]).any((1, 2))  # noqa: E731
    sskip = jnp.broadcast_to(jnp.asarray(smask)[None], (B, L, T))
    return {"arch_ratio": ratio, "arch_x": Xs, "arch_y": Ys, "ratio": ratio[:, 1:], "max": Xs[:, 1:] * Ys[:, 1:],
            "mac_max": Xs[:, 0].max(1) * Ys[:, 0].max(1),
            "mac_avg": jnp.floor((mac_inst[:, None] * ratio[:, 0]).max(1)),
            "sskip": sskip, "sprob": jnp.where(sskip, 1.0 - ratio[:, :L], 0.0),
            "fanout_x": fan(Xs, fanout_x), "fanout_y": fan(Ys, fanout_y)}
