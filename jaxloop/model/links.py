"""Timeloop's link transfers (on by default there), in closed form over the mapping tensors.

At the spatial loops of level l, Timeloop compares every child's delta (the data it needs at this
time step) with the previous step's deltas of its mesh neighbours (non-toroidal): children are
numbered idx = y * Fx + x (X loops innermost, dimension order; Fx, Fy the mapped fan-outs) and
placed in rows of width h = max(X mesh, Fx), so the neighbours of idx are idx +- 1 in the same
row and idx +- h. A child whose delta equals a neighbour's previous delta gets it over a link;
if that lowers the parent's accesses (fewer distinct deltas left to multicast), the step uses
the links. Only iterations #0 and #1 of each loop run (weight bound - 1), so the steps seen by
level l are the odometer of its non-unit temporal loops j = 0, 1, ... (innermost first): the
step into "loop j at #1" moves the tile by Delta_j = stride_j - sum of the strides of the
non-unit loops inside j (they return to #0), tau_j = Delta_j projected on the dataspace.

Child i's delta is child 0's translated by P(off_i) (its projected spatial offset), so a child
takes the link exactly when some neighbour j has P(off_j) - P(off_i) = w, w the translation
between consecutive child deltas:

* MAC level (l = 0): a child's "delta" is its operand, always one word: every step is eligible
  with w = tau_j (w = 0 for a stationary operand: neighbours holding the same word).
* l >= 1: the deltas are the child tile's deltas under the stride rule. With tau_0 the step of
  the innermost loop, tau_0 = 0 leaves every other step without a non-empty predecessor (no
  links); otherwise every #1 step of loop 0 is credited (size s = S - overlap(tau_0)) and a step
  of loop j >= 1 has size 0 (tau_j = 0), s (tau_j = tau_0) or S (refetch). Two consecutive deltas
  are translates of each other iff they have the same non-zero size: eligible steps are those of
  loop j with eps_j = [tau_j = tau_0] or [overlap(tau_0) = 0 and tau_j != 0], and the first
  loop-0 step when overlap(tau_0) = 0.

Per loop j the eligible weight E_j (epochs x delta size) then counts linked children and the
distinct deltas of the others; the parent's accesses drop by (distinct - groups_with) * E_j and
the link transfers are linked * E_j where the links win. Children are enumerated up to the
level's physical fan-out (mappings that exceed it are flagged invalid by the status bits). Per
(level, dataspace) up to CANDIDATES distinct translations with a matching neighbour pair are
counted; a mapping with more (`overflow`, not seen in the tests) gets the status bit `links`.

The post-processing follows Timeloop's tiling: ComputeParentAccessShare (the parent's weighted
accesses over the fan-out: child fills shrink by links / fan-out), MaskTiles (a bypassed child
rescales its parent's accesses and drops its links), ComputePeerAccesses (links / child instances
added to the child's reads and fills) and the rounded read/fill formulas.

Note: the spatial loop order is taken as dimension order with X loops inside Y loops (the
default `Mapping.spatial_perm`; a MappingBatch carries no spatial order).
"""

import jax.numpy as jnp

from jaxloop.model.access import permute
from jaxloop.model.tiling import rank_extents


def _project(ranks, v):
    """[..., D] iteration-space vector -> [..., R] per rank (coefficients are >= 0)."""
    return jnp.stack([sum(c * v[..., d] for d, c in r) for r in ranks], axis=-1)


CANDIDATES = 3  # distinct link translations per (level, dataspace) handled exactly


def _key(x):
    """[..., R] small integer vector -> one float64 (exact while |components| < 2**12)."""
    return sum(x[..., r] * float(2 ** (13 * r)) for r in range(x.shape[-1]))


def _round(x):
    """C++ std::round (halves away from zero)."""
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _level_terms(static, l, temporal, sx, sy, n, v, perm, E_bnd, E_below, tile):
    """Link terms of the spatial loops of level l: per dataspace (reduction of the parent's
    accesses, link transfers, distinct child deltas, child fills F) each [B]."""
    B, L, D = temporal.shape
    px, py = static.fanout[l]
    Nmax = int(px * py)
    fx = jnp.prod(sx[:, l], axis=1)
    fy = jnp.prod(sy[:, l], axis=1)
    N = fx * fy
    h = jnp.maximum(float(px), fx)[:, None]
    vs = jnp.maximum(float(py), fy)[:, None]
    i = jnp.arange(Nmax, dtype=jnp.float64)[None, :]
    Nn = N[:, None]

    def offsets(idx):  # [B, Nmax] child index -> [B, Nmax, D] iteration-space offset
        r, out = idx, []
        digits = []
        for rad in (sx[:, l], sy[:, l]):
            for d in range(D):
                q = jnp.floor(r / rad[:, d:d + 1])
                digits.append(r - q * rad[:, d:d + 1])
                r = q
        for d in range(D):
            out.append(digits[d] * E_below[:, l, d:d + 1] + digits[D + d] * (E_below[:, l, d] * sx[:, l, d])[:, None])
        return jnp.stack(out, axis=-1)

    hh = i - jnp.floor(i / h) * h
    vv = jnp.floor(i / h)
    alive = i < Nn
    nbrs = [(i - h, alive & (vv >= 1) & (vs > 1)), (i + h, alive & (vv < vs - 1) & (vs > 1) & (i + h < Nn)),
            (i - 1, alive & (hh >= 1) & (h > 1)), (i + 1, alive & (hh < h - 1) & (h > 1) & (i + 1 < Nn))]
    off = offsets(i)
    nb_off = [(offsets(jnp.clip(j, 0, Nmax - 1)), ok) for j, ok in nbrs]

    # Temporal loops above level l's spatial loops, nest order: slots (level l2 >= l, position p).
    nk = n[:, l:].reshape(B, -1)  # [B, K] bounds
    sk = v[:, l:].reshape(B, -1)  # strides
    onehot = (perm[:, l:, :, None] == jnp.arange(D)).reshape(B, -1, D).astype(jnp.float64)
    K = nk.shape[1]
    step = sk[..., None] * onehot  # [B, K, D]
    moving = jnp.where((nk > 1)[..., None], step, 0.0)
    inner = jnp.cumsum(moving, axis=1) - moving  # strides of the non-unit loops inside each slot
    delta = step - inner
    suffix = [jnp.ones(B)]  # product of the bounds outside each slot
    for k in range(K - 1, 0, -1):
        suffix.append(suffix[-1] * nk[:, k])
    outside = jnp.stack(suffix[::-1], axis=1)
    weight = (nk - 1) * outside  # epochs of the steps into "slot k at #1"
    nontrivial = nk > 1
    j0 = jnp.argmax(nontrivial, axis=1)
    first = (jnp.arange(K) == j0[:, None]) & nontrivial.any(axis=1)[:, None]

    earlier = jnp.arange(Nmax)[:, None] < jnp.arange(Nmax)[None, :]  # [k, i]: k < i
    out = []
    for t, ranks in enumerate(static.ranks):
        key = lambda x: _key(_project(ranks, x))  # noqa: E731
        P = key(off)  # [B, N]
        tau = _project(ranks, delta)  # [B, K, R]
        tk = jnp.where((jnp.abs(tau) < 2 ** 12).all(-1), _key(tau), jnp.nan)  # [B, K]; too far: no link
        same = (P[:, :, None] == P[:, None, :]) & alive[:, :, None] & alive[:, None, :] & earlier
        distinct = (alive & ~same.any(axis=1)).sum(axis=1).astype(jnp.float64)
        dP = [(key(o) - P, ok) for o, ok in nb_off]  # neighbour's delta offset, [B, N]
        hit = jnp.zeros(tk.shape, bool)  # some neighbour pair matches slot k's translation
        for d, ok in dP:
            hit = hit | (ok[:, None, :] & (d[:, None, :] == tk[..., None])).any(axis=2)
        # The few distinct matching translations (candidates); each slot takes its candidate's counts.
        n_linked = jnp.zeros(tk.shape)
        groups = jnp.broadcast_to(distinct[:, None], tk.shape)
        todo = hit
        for _ in range(CANDIDATES):
            c = jnp.argmax(todo, axis=1)
            w = jnp.take_along_axis(tk, c[:, None], axis=1)  # [B, 1]
            valid = todo.any(axis=1)[:, None]
            linked = jnp.zeros((B, Nmax), bool)
            for d, ok in dP:
                linked = linked | (ok & (d == w))
            free = (alive & ~linked).astype(jnp.float32)
            dup = jnp.einsum("bk,bki->bi", free, same.astype(jnp.float32))
            g = (free * (dup == 0)).sum(axis=1).astype(jnp.float64)
            mine = valid & (tk == w) & hit
            n_linked = jnp.where(mine, linked.sum(axis=1).astype(jnp.float64)[:, None], n_linked)
            groups = jnp.where(mine, g[:, None], groups)
            todo = todo & ~mine
        overflow = todo.any(axis=1)  # more distinct matching translations than CANDIDATES
        if l == 0:
            E = weight
            F = jnp.zeros(B)
        else:
            tau0 = (tau * first[..., None]).sum(axis=1)  # [B, R]
            ext = jnp.stack([rank_extents(E_bnd[:, l - 1], r) for r in ranks], axis=-1)
            ov0 = jnp.prod(jnp.maximum(0.0, ext - jnp.abs(tau0)), axis=-1)
            S = tile[:, l - 1, t]
            s = S - ov0
            eq0 = (tau == tau0[:, None, :]).all(-1)
            moves = (tau != 0).any(-1)
            eps = (eq0 | ((ov0 == 0)[:, None] & moves)) & ~first
            n0 = (nk * first).sum(axis=1)
            live = (tau0 != 0).any(-1)
            E_first = s * (n0 - 1) * ((ov0 == 0) + (eps * weight).sum(axis=1))
            E = jnp.where(live[:, None], jnp.where(first, E_first[:, None], s[:, None] * eps * weight), 0.0)
            size = jnp.where(moves, jnp.where(eq0, s[:, None], S[:, None]), 0.0)
            F = S + (n0 - 1) * s * (outside * first).sum(axis=1) + (weight * size * ~first).sum(axis=1)
        win = (groups < distinct[:, None]) & (E > 0)
        red = (win * (distinct[:, None] - groups) * E).sum(axis=1)
        lk = (win * n_linked * E).sum(axis=1)
        out.append((red, lk, distinct, F, overflow))
    return out


def link_transfers(static, temporal, sx, sy, perm, keep, E_bnd, E_below, E_sp, tile, part, t_total, fanout,
                   instances, reads, fills, updates):
    """Reads, fills and updates [B, L, T] of the kernel without links -> with Timeloop's links, and
    a flag [B] for mappings whose links the kernel cannot count exactly (more than CANDIDATES
    distinct link translations at one level and dataspace).

    Only (level, dataspace) entries that links change are recomputed; the others are returned
    bit for bit. Counts are float64 (exact integers; Timeloop's rounding where it rounds).
    `fanout` [B, L] is the spatial fan-out used at each level, `instances` [B, L] the utilized
    instances of each level (the kernel's)."""
    B, L, D = temporal.shape
    if not static.fanout or all(px * py <= 1 for px, py in static.fanout):
        return reads, fills, updates, jnp.zeros(B, bool)
    n, v = permute(temporal, perm), permute(E_sp, perm)  # per loop in nest order: bound and stride
    zero = jnp.zeros(B)
    terms = {l: _level_terms(static, l, temporal, sx, sy, n, v, perm, E_bnd, E_below, tile)
             for l in range(L) if static.fanout[l][0] * static.fanout[l][1] > 1}
    R, Fi, U = [], [], []
    for t in range(static.T):
        rw = static.read_write[t]
        kt = keep[:, :, t]
        p = part[:, :, t]
        red = [terms[l][t][0] if l in terms else zero for l in range(L)]
        lk = [terms[l][t][1] if l in terms else zero for l in range(L)]
        dist = [terms[l][t][2] if l in terms else jnp.ones(B) for l in range(L)]
        F_own = [terms[l][t][3] if l in terms else zero for l in range(L)]
        f_raw = fills[:, :, t] + (p if rw else 0.0)  # child fills where the child keeps t (not the top)
        # Content accesses with links (MaskTiles: a bypassed child rescales its parent's accesses).
        ca, changed = [t_total * dist[0] - red[0]], [red[0] > 0]
        for l in range(1, L):
            F = jnp.where(kt[:, l - 1], f_raw[:, l - 1], F_own[l])
            acc, weighted = dist[l] * F - red[l], fanout[:, l] * F - lk[l]
            own = (red[l] > 0) | (lk[l] > 0)
            rescaled = ca[-1] * fanout[:, l] * acc / jnp.where(weighted > 0, weighted, 1.0)
            masked = jnp.where(own, rescaled, dist[l] * ca[-1])
            ca.append(jnp.where(kt[:, l - 1], acc, masked))
            changed.append(jnp.where(kt[:, l - 1], red[l] > 0, own | changed[-1]))
        rd, fl, up = [], [], []
        for l in range(L):
            link_above = lk[l + 1] if l + 1 < L else zero
            pa = jnp.where(kt[:, l], link_above / instances[:, l], 0.0)  # ComputePeerAccesses
            new_r = _round(ca[l] + pa - (p[:, l] if rw else 0.0))
            hit = kt[:, l] & (changed[l] | (pa > 0))
            rd.append(jnp.where(hit, new_r, reads[:, l, t]))
            up.append(jnp.where(kt[:, l] & changed[l] & rw, _round(ca[l]), updates[:, l, t]))
            if l + 1 < L:
                share = f_raw[:, l] - link_above / fanout[:, l + 1]  # the parent's weighted accesses / fan-out
                new_f = jnp.maximum(0.0, _round(share + pa - p[:, l])) if rw else jnp.floor(share + pa)
                fl.append(jnp.where(pa > 0, new_f, fills[:, l, t]))
            else:
                fl.append(fills[:, l, t])
        R.append(jnp.stack(rd, axis=1))
        Fi.append(jnp.stack(fl, axis=1))
        U.append(jnp.stack(up, axis=1))
    over = jnp.zeros(B, bool)
    for per_t in terms.values():
        for term in per_t:
            over = over | term[4]
    return jnp.stack(R, axis=2), jnp.stack(Fi, axis=2), jnp.stack(U, axis=2), over
