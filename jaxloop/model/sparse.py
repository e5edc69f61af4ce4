"""Sparseloop as kernel terms: formats, gating, skipping and compute classes on top of the dense counts.

`apply(sp, static, arr, dense)` takes the dense kernel's per-mapping counts (reads, fills,
updates, tile shapes, loop factors; batched over mappings) and returns Sparseloop's statistics:
per level and dataspace the random (actual), gated and skipped reads / fills / updates, format
(metadata + payload) accesses per rank, vector accesses, energy, cycles, and the algorithmic /
actual / gated / skipped computes. `sp` is the static structure (`SparseStatic`, which formats
and optimizations exist); every number (densities, word bits, energies) is a traced array in
`arr`, so a density sweep never recompiles.

The steps follow Sparseloop (Timeloop `src/sparse-analysis`, SPEC-sparse-analog Part A):

1. loop nest: per storage level its spatial loops (only where the level has a fan-out; all
   dimensions, canonical order) inside its temporal loops (in the mapping's permutation);
   max-tile molds are cumulative products of the loop bounds (A1).
2. formats (A3.2): each (level, dataspace) with a representation format maps its ranks onto
   the non-trivial loops relevant to the dataspace, outer to inner (or inner to outer),
   honouring flattening rules; compressed levels whose child keeps a tile of > 1 point are
   pre-tiled (the child's ranks become the innermost ranks). Mappings that need more ranks
   than the format has get a status bit.
3. occupancy (A3.3): the tile's occupancy pmf (density.py) weights each rank's metadata and
   payload units, computed with conditional empty probabilities given the tile's occupancy;
   metadata accesses are ceil(units x dense accesses / tile shape) (A3.4).
4. storage action optimizations (A4.1): for every option the target loop and the leader
   (condition-on) tile are found from the loop nest, p = 1 - prod(1 - P_empty(leader));
   the option saving the most read energy is kept per group.
5. combination (A3.5, A4.2, A4.3): compression removes accesses to zeros of tensors with
   metadata; each level's SAF turns a fraction of its reads/updates into gated or skipped
   ones and eliminates the corresponding traffic at inner levels and, for read-only
   operands, the computes (with Timeloop's floor/ceil points).
6. computes (A4.5): Timeloop's two-operand state classification.
7. energy and cycles (A3.6, A5): ceil(count / block) vector accesses, metadata words
   ceil(bits / metadata width), ERT energies per action; skipped actions use no bandwidth.

Notes where this departs from (or pins down) Timeloop:

* Spatial loops of one level are taken in dimension order (MappingBatch does not carry the
  spatial permutation); only the relative order of two non-trivial spatial loops of the same
  level relevant to the same tensor could differ.
* A rank that a flattening rule leaves empty is a dummy in its own position (Timeloop appends
  it at the outer end); at a nested SAF level the random metadata reads keep the reads
  (Timeloop 74ae30b copies the updates there, which zeroes them for read-only tensors).
  Neither case occurs in the reference cases.
* `skipping_spatial` (spatial skipping) is not modelled; such a spec is rejected at compile.
* `charge_skipped_metadata_as_actual` (SparseStatic flag, off by default) charges skipped
  metadata reads at the random metadata-read energy, as the MICRO'22 artifact's Timeloop
  build did (SPEC A3.6 / A6.3).
"""

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jaxloop.model import density as dmodel
from jaxloop.model.tiling import footprint

ACTIONS = ("random_read", "gated_read", "skipped_read", "random_fill", "gated_fill", "skipped_fill",
           "random_update", "gated_update", "skipped_update",
           "random_metadata_read", "gated_metadata_read", "skipped_metadata_read",
           "random_metadata_fill", "gated_metadata_fill", "skipped_metadata_fill",
           "random_metadata_update", "gated_metadata_update", "skipped_metadata_update",
           "decompression_count", "compression_count")
A = {a: i for i, a in enumerate(ACTIONS)}
FORMAT_CODES = {"U": 0, "UOP": 1, "B": 2, "RLE": 3, "CP": 4, "UB": 5}
VECTOR_WIDTH_THRESHOLDS = {2: (251, 125, 84, 63, 51, 42, 36, 32, 28, 1), 4: (375, 188, 125, 94, 75, 63, 54, 47, 42, 1),
                           8: (438, 219, 146, 110, 88, 73, 63, 55, 49, 1), 16: (469, 235, 157, 118, 94, 79, 67, 59, 52, 1),
                           32: (485, 243, 162, 122, 97, 81, 70, 61, 52, 1)}


@dataclass(frozen=True)
class SparseStatic:
    """Hashable structure of the sparse part (part of the jit key). Numbers live in `arr`."""

    fanout: tuple  # per level: the level has a spatial fan-out (a spatial tiling level)
    density_kind: tuple  # per dataspace
    formats: tuple  # ((level, dataspace, inner_to_outer, ((format, flatten dims or None), ...)), ...) ranks innermost first
    R: int  # max ranks over formats (>= 1)
    safs: tuple  # ((level, kind, ((target, (cond, ...)), ...)), ...) in Timeloop's processing order
    compute_gating: bool = False
    compute_skipping: bool = False
    charge_skipped_metadata_as_actual: bool = False
    decompression_supported: tuple = ()
    compression_supported: tuple = ()
    grid: int = dmodel.GRID

    def format(self, l, t):
        for fl, ft, order, ranks in self.formats:
            if fl == l and ft == t:
                return order, ranks
        return None

    def compressed(self, l, t):
        f = self.format(l, t)
        return f is not None and any(code in ("B", "RLE", "CP") for code, _ in f[1])

    def n_ranks(self, l, t):
        f = self.format(l, t)
        return len(f[1]) if f is not None else 1


def _round6(x):
    """C++ round(x * 1e6) / 1e6 for x >= 0 (halves away from zero)."""
    y = x * 1e6
    r = jnp.round(y)
    r = jnp.where(y - jnp.floor(y) == 0.5, jnp.floor(y) + 1.0, r)
    return r / 1e6


def _sel(idx, stacked):
    """stacked[..., i] chosen per batch by idx [B] (idx out of range -> 0)."""
    n = stacked.shape[1]
    oh = (idx[:, None] == jnp.arange(n)[None, :])
    oh = oh.reshape(oh.shape + (1,) * (stacked.ndim - 2))
    return jnp.where(oh, stacked, 0).sum(axis=1)


# ----------------------------------------------------------------------------- loop nest

class Nest:
    """Loop slots of every level, innermost first: [spatial x D if fan-out] + [temporal x D].

    dim [B, N] int, bound [B, N] float, E [B, N, D] cumulative extents (max-tile molds, the
    slot included); `spatial`, `level` static numpy arrays [N]; `last[l]` the last slot of
    level l (its outermost temporal loop)."""

    def __init__(self, fanout, temporal, spatial, perm):
        B, L, D = temporal.shape
        dims, bounds, sp, lv = [], [], [], []
        for l in range(L):
            if fanout[l]:
                for d in range(D):
                    dims.append(jnp.full((B,), d, jnp.int32))
                    bounds.append(spatial[:, l, d])
                    sp.append(True)
                    lv.append(l)
            for j in range(D):
                dj = perm[:, l, j]
                dims.append(dj)
                bounds.append(jnp.take_along_axis(temporal[:, l], dj[:, None], axis=1)[:, 0])
                sp.append(False)
                lv.append(l)
        self.dim = jnp.stack(dims, 1)
        self.bound = jnp.stack(bounds, 1)
        self.spatial = np.array(sp)
        self.level = np.array(lv)
        self.N, self.L, self.D, self.B = len(sp), L, D, B
        onehot = self.dim[..., None] == jnp.arange(D)
        step = jnp.where(onehot, self.bound[..., None], 1.0)
        self.E = jnp.cumprod(step, axis=1)
        self.onehot = onehot
        self.last = [int(np.nonzero(self.level == l)[0][-1]) for l in range(L)]
        self.first = [int(np.nonzero(self.level == l)[0][0]) for l in range(L)]

    def rel(self, rel_dims):
        """[B, N] whether each slot's dimension is in the static set `rel_dims` (bool [D])."""
        return jnp.asarray(np.asarray(rel_dims, bool))[self.dim]


def _relevant(static, t):
    return np.array(static.relevant(t), bool)


def _child_parent(keep):
    """child[b, l, t] / parent[b, l, t]: nearest lower / upper level keeping t (-1 / L if none)."""
    B, L, T = keep.shape
    idx = jnp.arange(L)[None, :, None]
    child, parent = [], []
    for l in range(L):
        below = keep[:, :l] if l else jnp.zeros((B, 0, T), bool)
        c = jnp.max(jnp.where(below, idx[:, :l], -1), axis=1) if l else jnp.full((B, T), -1)
        above = keep[:, l + 1:]
        p = jnp.min(jnp.where(above, idx[:, l + 1:], L), axis=1) if l < L - 1 else jnp.full((B, T), L)
        child.append(c)
        parent.append(p)
    return jnp.stack(child, 1), jnp.stack(parent, 1)


# ----------------------------------------------------------------------------- formats

def _assign_ranks(sp, nest, ranks_t, rel, l, child, pretile, inner, E_child, order, rank_specs, has_md):
    """Timeloop's ApplyRanksOuterToInner / InnerToOuter for (level l, one dataspace).

    Returns fiber box extents per rank [B, R_l, D] (rank r >= inner), the rank's subtile
    footprint [B, R_l] (0 = unassigned), the innermost in-range subtile footprint [B], and
    a fail flag [B] (more ranks needed than the format has)."""
    B, D = nest.B, nest.D
    R = len(rank_specs) if has_md else 1
    rule_exists = np.array([has_md and rs[1] is not None for rs in rank_specs] if has_md else [False])
    rule_mask = np.zeros((R, D), bool)
    if has_md:
        for r, rs in enumerate(rank_specs):
            if rs[1] is not None:
                rule_mask[r, list(rs[1])] = True
    rule_exists_j = jnp.asarray(rule_exists)
    rule_mask_j = jnp.asarray(rule_mask)
    slots = [k for k in range(nest.N) if nest.level[k] <= l]
    relk = nest.rel(rel)
    in_range = relk & (jnp.asarray(nest.level)[None, :] > child[:, None])  # [B, N]
    # no pre-tiling: the innermost in-range loop of each dimension absorbs the child tile's extent
    seen = jnp.zeros((B, D), bool)
    sbound = {}
    for k in sorted(slots):
        oh = nest.onehot[:, k]  # [B, D]
        first = in_range[:, k] & ~(seen & oh).any(-1)
        scale = jnp.where(oh, E_child, 1.0).prod(-1)
        sbound[k] = jnp.where(first & ~pretile, nest.bound[:, k] * scale, nest.bound[:, k])
        seen = seen | (oh & in_range[:, k][:, None])
    sub_k = {k: footprint(nest.E[:, k], ranks_t) for k in slots}
    # innermost in-range slot's subtile (Timeloop's singleton[0])
    sing0 = jnp.ones((B,))
    for k in sorted(slots, reverse=True):
        sing0 = jnp.where(in_range[:, k], sub_k[k], sing0)
    box = jnp.ones((B, R, D))
    sub = jnp.zeros((B, R))
    fail = jnp.zeros((B,), bool)
    ext = jnp.zeros((B,), bool)
    rid = jnp.arange(R)
    if not order:  # outer to inner
        r = jnp.full((B,), R, jnp.int32)
        seq = sorted(slots, reverse=True)
    else:
        r = inner.astype(jnp.int32) - 1
        seq = sorted(slots)
    for k in seq:
        a = in_range[:, k]
        nt = sbound[k] > 1
        dk = nest.dim[:, k]
        rc = jnp.clip(r, 0, R - 1)
        in_rule = rule_mask_j[rc, dk]
        cont = a & ext & ((not has_md) | in_rule | ~nt)
        grow = cont & nt
        box = jnp.where((grow[:, None] & (rid[None] == rc[:, None]))[..., None] & nest.onehot[:, k][:, None, :],
                        box * sbound[k][:, None, None], box)
        ext = ext & ~(a & ~cont)
        seek = a & ~cont & nt
        # find the next rank whose flattening rule admits this loop (skipped ranks become dummies)
        assigned = jnp.zeros((B,), bool)
        rt = r
        for _ in range(R + 1):
            can = ~assigned & ((rt > inner) if not order else (rt < R - 1))
            rt = jnp.where(can, rt - 1 if not order else rt + 1, rt)
            rtc = jnp.clip(rt, 0, R - 1)
            blocked = rule_exists_j[rtc] & ~rule_mask_j[rtc, dk] if has_md else jnp.zeros((B,), bool)
            ok = can & ~blocked
            if order:  # inner-to-outer dummies take the scalar subtile
                sub = jnp.where((seek & can & blocked)[:, None] & (rid[None] == rtc[:, None]), 1.0, sub)
            assigned = assigned | ok
        take = seek & assigned
        fail = fail | (seek & ~assigned)
        r = jnp.where(seek, jnp.where(assigned, rt, r), r)
        rc = jnp.clip(r, 0, R - 1)
        sel = take[:, None] & (rid[None] == rc[:, None])
        box = jnp.where(sel[..., None] & nest.onehot[:, k][:, None, :], box * sbound[k][:, None, None], box)
        sub = jnp.where(sel, sub_k[k][:, None], sub)
        flat = (not has_md) | (rule_exists_j[rc] & rule_mask_j[rc, dk])
        ext = jnp.where(take, flat, ext)
    sub = jnp.where(sub == 0, sing0[:, None], sub)
    return box, sub, sing0, fail


def formats(sp, static, nest, keep, tile, child):
    """Per (level, dataspace): fiber shapes [B, R] and subtile sizes [B, R+1] (index 0 = the
    element tile of rank 0), number of ranks, pre-tiling and validity flags."""
    B, L, T = keep.shape
    Rmax = sp.R
    out = {}
    fail = jnp.zeros((B,), bool)
    for t in range(T):
        rel = _relevant(static, t)
        ranks_t = static.ranks[t]
        for l in range(L):
            f = sp.format(l, t)
            has_md = f is not None
            R_l = len(f[1]) if has_md else 1
            kept = keep[:, l, t]
            c = child[:, l, t]
            comp = sp.compressed(l, t)
            ctile = _sel(c, tile[:, :, t]) if l else jnp.zeros((B,))
            pretile = (c >= 0) & (ctile > 1) & comp
            # child's ranks (for pre-tiling): count, fibers, subtiles, compressed formats
            inner = jnp.zeros((B,), jnp.int32)
            cf = jnp.ones((B, Rmax))
            cs = jnp.ones((B, Rmax + 1))
            for cl in range(l):
                isc = pretile & (c == cl)
                ch = out.get((cl, t))
                if ch is None:
                    continue
                ncr = ch["n"]
                inner = jnp.where(isc, ncr, inner)
                cf = jnp.where(isc[:, None], ch["fiber"], cf)
                cs = jnp.where(isc[:, None], ch["sub"], cs)
                bad = ncr > R_l
                cfmt = sp.format(cl, t)
                if cfmt is not None and sp.compressed(cl, t) and not bad:
                    bad = any(cfmt[1][i][0] != f[1][i][0] for i in range(ncr))
                if bad:
                    fail = fail | (isc & kept)
            E_child = jnp.where((c >= 0)[:, None], _sel(jnp.maximum(c, 0), _bnd_extents(nest, L)), 1.0)
            order = f[0] if has_md else False
            box, sub_r, sing0, fl = _assign_ranks(sp, nest, ranks_t, rel, l, c, pretile, inner, E_child, order,
                                                  f[1] if has_md else (), has_md)
            fail = fail | (fl & kept)
            fiber_own = jnp.stack([footprint(box[:, r], ranks_t) for r in range(R_l)], 1)
            rid = jnp.arange(R_l)[None]
            use_child = rid < inner[:, None]
            fiber = jnp.where(use_child, cf[:, :R_l], fiber_own)
            sub_top = jnp.where(use_child, cs[:, 1:R_l + 1], sub_r)
            sub0 = jnp.where(pretile, cs[:, 0], 1.0)
            sub = jnp.concatenate([sub0[:, None], sub_top], 1)
            pad_f = jnp.ones((B, Rmax - R_l))
            out[(l, t)] = {"n": R_l, "fiber": jnp.concatenate([fiber, pad_f], 1),
                           "sub": jnp.concatenate([sub, jnp.ones((B, Rmax - R_l))], 1),
                           "has_md": has_md, "pretile": pretile}
    return out, fail


def _bnd_extents(nest, L):
    """E at each level boundary [B, L, D]."""
    return jnp.stack([nest.E[:, nest.last[l]] for l in range(L)], 1)


# ----------------------------------------------------------------------------- occupancy

def _rank_units(code, max_fibers, fiber, pe_fib, pe_el):
    """(metadata units, payload units) of one rank (Timeloop's format models)."""
    fibers = max_fibers * (1.0 - pe_fib)
    if code == "UOP":
        return jnp.zeros_like(fiber), fibers * (fiber + 1.0)
    if code == "B":
        return fibers * fiber, fibers * jnp.ceil(fiber * (1.0 - pe_el))
    if code == "RLE":
        u = fiber * (1.0 - pe_el) * fibers
        return u, u
    if code == "CP":
        u = jnp.ceil(fiber * (1.0 - pe_el)) * fibers
        return u, u
    if code == "UB":
        return max_fibers * fiber, max_fibers * fiber
    return jnp.zeros_like(fiber), jnp.zeros_like(fiber)  # U


def metadata_given(model, codes, fiber, sub, n, k):
    """Per-rank (md, pl) units [.., R, 2] of a tile of n points known to hold k non-zeros.
    fiber [.., R], sub [.., R+1] broadcast against k [.., K] via a trailing K axis."""
    R = len(codes)
    out = [None] * R
    max_f = jnp.ones_like(k)
    nontriv = [fiber[..., r] > 1 for r in range(R)]
    # the innermost non-trivial rank's payload is the data itself
    inner_nt = jnp.full(fiber.shape[:-1], R, jnp.int32)
    for r in range(R - 1, -1, -1):
        inner_nt = jnp.where(nontriv[r], r, inner_nt)
    for r in range(R - 1, -1, -1):
        fr = fiber[..., r][..., None]
        cur = n[..., None] if r == R - 1 else sub[..., r + 1][..., None]
        nxt = sub[..., r][..., None]
        pe_f = model.p_empty_given(cur, n[..., None], k)
        pe_e = model.p_empty_given(nxt, n[..., None], k)
        md, pl = _rank_units(codes[r], max_f, fr, pe_f, pe_e)
        keep = nontriv[r][..., None]
        md = jnp.where(keep, md, 0.0)
        pl = jnp.where(keep & (inner_nt[..., None] != r), pl, 0.0)
        out[r] = jnp.stack([md, pl], -1)
        max_f = max_f * fr
    return jnp.stack(out, -3)  # [.., R, K, 2]
