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

Format, metadata and (de)compression terms exist only for the (level, dataspace) pairs that
have a format (or a compressed parent); they are kept per pair ({(l, t): [B, ...]}) and the
dense [B, L, T, ...] Stats fields are assembled from them, zeros elsewhere, at the end.

Notes where this departs from (or pins down) Timeloop:

* Spatial loops of one level run along X inside those along Y, as Timeloop nests them, and
  within an axis in dimension order (MappingBatch does not carry the spatial permutation); only
  the relative order of two non-trivial spatial loops on the same axis of the same level,
  relevant to the same tensor, could differ.
* A rank that a flattening rule leaves empty is a dummy in its own position (Timeloop appends
  it at the outer end); at a nested SAF level the random metadata reads keep the reads
  (Timeloop 74ae30b copies the updates there, which zeroes them for read-only tensors).
  Neither case occurs in the reference cases.
* `skipping_spatial` (spatial skipping): utilized instances from `spatial_skip.analyse`; the
  target's inner counts and computes are eliminated as by any SAF, with no impact at the SAF
  level itself; average instances replace the empty-tile ones, for energy and bandwidth.
* `arr["sp_charge_skipped_metadata_as_actual"]` (traced 0/1, default 0; also a SparseStatic
  flag) charges skipped metadata reads at the random metadata-read energy, as the MICRO'22
  artifact's Timeloop build did (SPEC A3.6 / A6.3). Set it with `with_artifact_charging(arr)`.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model import density as dmodel
from jaxloop.model import fold, latency, spatial_skip
from jaxloop.model.access import inverse
from jaxloop.model.tiling import extents, footprint

ACTIONS = ("random_read", "gated_read", "skipped_read", "random_fill", "gated_fill", "skipped_fill",
           "random_update", "gated_update", "skipped_update",
           "random_metadata_read", "gated_metadata_read", "skipped_metadata_read",
           "random_metadata_fill", "gated_metadata_fill", "skipped_metadata_fill",
           "random_metadata_update", "gated_metadata_update", "skipped_metadata_update",
           "decompression_count", "compression_count")
A = {a: i for i, a in enumerate(ACTIONS)}
FORMAT_CODES = {"U": 0, "UOP": 1, "B": 2, "RLE": 3, "CP": 4, "UB": 5}
# Timeloop's VectorWidthCoefficientTable: per block size, tile-shape / block thresholds for densities 0.1 .. 1.0
VECTOR_WIDTH_THRESHOLDS = {2: (251, 125, 84, 63, 51, 42, 36, 32, 28, 1),
                           4: (375, 188, 125, 94, 75, 63, 54, 47, 42, 1),
                           8: (438, 219, 146, 110, 88, 73, 63, 55, 49, 1),
                           16: (469, 235, 157, 118, 94, 79, 67, 59, 52, 1),
                           32: (485, 243, 162, 122, 97, 81, 70, 61, 52, 1)}


@dataclass(frozen=True)
class SparseStatic:
    """Hashable structure of the sparse part (part of the jit key). Numbers live in `arr`."""

    fanout: tuple  # per level: the level has a spatial fan-out (a spatial tiling level)
    density_kind: tuple  # per dataspace
    # ((level, dataspace, inner_to_outer, ((format, flatten dims or None), ...)), ...), ranks innermost first
    formats: tuple
    R: int  # max ranks over formats (>= 1)
    safs: tuple  # ((level, kind, ((target, (cond, ...)), ...)), ...) in Timeloop's processing order
    spatial_safs: tuple = ()  # ((level, target, leader), ...): skipping_spatial (spatial_skip.py)
    compute_gating: bool = False
    compute_skipping: bool = False
    charge_skipped_metadata_as_actual: bool = False
    decompression_supported: tuple = ()
    compression_supported: tuple = ()
    prime_factors: tuple = ()  # per dimension: prime factors of its bound (bounds the non-trivial loops)
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
    """stacked[:, i] chosen per batch by idx [B] (idx out of range -> 0), as a select chain."""
    idx = idx.reshape(idx.shape + (1,) * (stacked.ndim - 2))
    out = jnp.zeros_like(stacked[:, 0])
    for i in range(stacked.shape[1]):
        out = jnp.where(idx == i, stacked[:, i], out)
    return out


# ----------------------------------------------------------------------------- loop nest

class Nest:
    """The loops of every level, batch-last: per level its spatial loops (only where the level
    fans out) inside its temporal ones, one slot per (level, kind, dimension).

    Slots are listed in a static order (level, spatial before temporal, dimension): a slot's
    level, kind and dimension are static numpy arrays [N] (`level`, `spatial`, `dim`). The
    mapping's loop order is carried by `key` [N, B]: each loop's place in the nest, innermost
    first (0 .. N - 1). Questions about the order ("the innermost relevant loop", "the loops
    above it") are comparisons of keys, and a loop's quantities reach its dimension statically:
    no gathers or permutations (scalar code on CPUs), only elementwise chains over the rows
    ([B] vectors). A level's spatial loops run along X inside those along Y, as Timeloop nests
    them, and within an axis in dimension order (MappingBatch has no spatial permutation).
    `bound` [N, B]; `E_bnd`, `E_below` [L, D, B]: the extents at and below each level boundary.

    `temporal`, `spatial`, `position` (each dimension's place in its level's temporal order)
    and `on_y` (the dimension's spatial loop runs along Y) are [L, D, B]."""

    def __init__(self, fanout, temporal, spatial, position, on_y):
        L, D, B = temporal.shape
        fo = np.asarray(fanout, bool)
        spatial = jnp.where(jnp.asarray(fo)[:, None, None], spatial, 1.0)  # no spatial loops without a fan-out
        # X dimensions first, then Y ones, each in dimension order: a spatial loop's place in its level
        ykey = on_y.astype(jnp.int32) * D + jnp.arange(D, dtype=jnp.int32)[None, :, None]
        sinv = sum((ykey[:, e:e + 1] < ykey).astype(jnp.int32) for e in range(D))
        keys, bounds, sp, lv = [], [], [], []
        for l in range(L):
            for is_sp, place, bound in ((True, sinv, spatial), (False, position.astype(jnp.int32), temporal)):
                if is_sp and not fo[l]:
                    continue
                keys.append(len(sp) + place[l])
                bounds.append(bound[l])
                sp += [is_sp] * D
                lv += [l] * D
        # materialized once: every question below reads them, none recomputes them
        self.key, self.bound = jax.lax.optimization_barrier((jnp.concatenate(keys), jnp.concatenate(bounds)))
        self.spatial, self.level = np.array(sp), np.array(lv)
        self.dim = np.tile(np.arange(D), len(sp) // D)
        self.N, self.L, self.D, self.B = len(sp), L, D, B
        self.last = [int(np.sum(self.level <= l)) - 1 for l in range(L)]  # key of each level's outermost loop
        self.E_bnd, self.E_below, _ = extents(temporal, spatial, axis=0)

    def slots(self, level_max=None, dims=None, spatial=None):
        """Static slot indices of levels <= level_max over the dimensions `dims` (bool [D])."""
        ok = np.ones(self.N, bool)
        if level_max is not None:
            ok &= self.level <= level_max
        if dims is not None:
            ok &= np.asarray(dims, bool)[self.dim]
        if spatial is not None:
            ok &= self.spatial == spatial
        return np.nonzero(ok)[0]

    def upto(self, key):
        """[D, B]: the extents of every loop up to and including the one at `key` [B] (the max-tile mold)."""
        on = jnp.where(self.key <= key, self.bound, 1.0)  # slots come in groups of D, one per dimension
        return fold.product(on.reshape(self.N // self.D, self.D, self.B), 0)

    def per_dim(self, v, slots=None):
        """[D, B]: the product of the per-slot vectors v (over `slots`, default all) per dimension."""
        slots = range(self.N) if slots is None else slots
        out = []
        for d in range(self.D):
            xs = [x for x, s in zip(v, slots) if self.dim[s] == d]
            out.append(fold.product(xs) * jnp.ones(self.B) if xs else jnp.ones(self.B))
        return jnp.stack(out)

    def first(self, mask, slots=None):
        """[B]: the key of the innermost loop where mask (per-slot vectors over `slots`; N when none)."""
        slots = range(self.N) if slots is None else slots
        return fold.smallest([jnp.where(m, self.key[s], self.N) for m, s in zip(mask, slots)]
                             or [jnp.full((self.B,), self.N, jnp.int32)])


def _nest(sp, temporal, spatial, perm, spatial_y):
    """The Nest of batch-first [B, L, D] factors, loop orders and Y factors."""
    last = lambda x: jnp.moveaxis(x, 0, -1)  # noqa: E731
    return Nest(sp.fanout, last(temporal), last(spatial), inverse(last(perm), 1), last(spatial_y) > 1)


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
    """Timeloop's ApplyRanksOuterToInner / InnerToOuter for (level l, one dataspace), over the
    non-trivial loops in application order (outermost first, or innermost first for
    inner_to_outer): in closed form when no flattening rule can skip a rank, else a lax.scan.

    Returns fiber box extents per rank [R_l, D, B] (rank r >= inner), the rank's subtile
    footprint [B, R_l] (the innermost in-range subtile for dummy ranks), that subtile [B], and a
    fail flag [B] (more ranks needed than the format has, or a pre-tiled child with more ranks).
    `E_child` [D, B]: the child's tile extents."""
    B, D = nest.B, nest.D
    R = len(rank_specs) if has_md else 1
    rule_exists = np.array([has_md and rs[1] is not None for rs in rank_specs] if has_md else [False])
    rule_mask = np.zeros((R, D), bool)
    if has_md:
        for r, rs in enumerate(rank_specs):
            if rs[1] is not None:
                rule_mask[r, list(rs[1])] = True
    relb = np.asarray(rel, bool)
    # only loops of levels <= l over the dataspace's dimensions can be in range
    S = nest.slots(level_max=l, dims=relb)
    lv, dm = nest.level[S], nest.dim[S]
    key = [nest.key[s] for s in S]
    in_range = [lv[i] > child for i in range(len(S))]
    # no pre-tiling: the innermost in-range loop of each dimension (at level child + 1: its spatial
    # loop if that level fans out, else its temporal one) absorbs the child tile's extent
    own = nest.spatial[S] == np.asarray(sp.fanout)[lv]
    sbound = [jnp.where((lv[i] == child + 1) & ~pretile, nest.bound[s] * E_child[dm[i]], nest.bound[s]) if own[i]
              else nest.bound[s] for i, s in enumerate(S)]
    kfirst = nest.first(in_range, S)  # the innermost in-range loop's subtile (Timeloop's singleton[0])
    sing0 = jnp.where(kfirst < nest.N, footprint(nest.upto(kfirst), ranks_t, axis=0), 1.0)
    # Only in-range loops with a bound > 1 change the state, and a mapping whose factors multiply
    # to the bounds has at most (prime factors of the bound) of those per dimension (a mapping
    # with more fails; its factors are already invalid).
    active = [a & (b > 1) for a, b in zip(in_range, sbound)]
    K = len(nest.slots(level_max=l))
    n_active = min(K, sum(min(K // D, sp.prime_factors[d]) for d in np.nonzero(relb)[0]))
    count = fold.total([a.astype(jnp.int32) for a in active])
    fail0 = count > n_active
    # each active loop's place among the active ones, innermost first: the active loops of
    # earlier groups (level, kind) plus those of its own group with a smaller key
    group = lv * 2 + ~nest.spatial[S]
    below = jnp.zeros((B,), jnp.int32)
    place = [None] * len(S)
    for g in np.unique(group):
        idx = np.nonzero(group == g)[0]
        for i in idx:
            place[i] = below + sum(((key[j] < key[i]) & active[j]).astype(jnp.int32) for j in idx if j != i)
        below = below + sum(active[i].astype(jnp.int32) for i in idx)
    full = rule_exists & rule_mask[:, relb].all(1)  # rules that admit every loop
    if (full | ~rule_exists).all():
        return _ranks_direct(nest, ranks_t, S, active, sbound, key, place, count, inner, order, full, sing0, fail0)
    # the scan walks the active loops compacted to the front, innermost first
    comp = []
    for j in range(n_active):
        at = [a & (p == j) for a, p in zip(active, place)]
        pick = lambda xs: fold.total([jnp.where(m, x, 0) for m, x in zip(at, xs)])  # noqa: E731
        kj = pick(key)
        comp.append((j < count, pick(sbound), pick([jnp.full((B,), d, jnp.int32) for d in dm]),
                     footprint(nest.upto(kj), ranks_t, axis=0)))
    xs = tuple(jnp.stack(x) for x in zip(*comp))  # [n_active, B] each
    return _ranks_scan(xs, B, D, R, inner, order, has_md, rule_exists, rule_mask, relb, sing0, fail0)


def _ranks_scan(xs, B, D, R, inner, order, has_md, rule_exists, rule_mask, relb, sing0, fail0):
    """The general rank assignment: a lax.scan over the active loops xs = (active, bound,
    dimension, subtile footprint), each [n, B], innermost first."""
    rule_exists_j = jnp.asarray(rule_exists)
    rule_mask_j = jnp.asarray(rule_mask)
    # a rule can only turn a rank into a dummy if it misses one of the dataspace's dimensions
    can_block = bool(any(rule_exists[r] and not rule_mask[r][relb].all() for r in range(R)))
    rid = jnp.arange(R)
    if not order:
        xs = tuple(x[::-1] for x in xs)
        r0 = jnp.full((B,), R, jnp.int32)
    else:
        r0 = inner.astype(jnp.int32) - 1

    def step(carry, x):
        r, ext, box, sub, fail = carry
        a, sb, dk, sk = x
        ohk = dk[:, None] == jnp.arange(D)[None]
        nt = sb > 1
        rc = jnp.clip(r, 0, R - 1)
        in_rule = rule_mask_j[rc, dk]
        cont = a & ext & ((not has_md) | in_rule | ~nt)
        grow = cont & nt
        box = jnp.where((grow[:, None] & (rid[None] == rc[:, None]))[..., None] & ohk[:, None, :],
                        box * sb[:, None, None], box)
        ext = ext & ~(a & ~cont)
        seek = a & ~cont & nt
        # the next rank whose flattening rule admits this loop (skipped ranks become dummies)
        assigned = jnp.zeros((B,), bool)
        rt = r
        for _ in range(R + 1 if can_block else 1):
            can = ~assigned & ((rt > inner) if not order else (rt < R - 1))
            rt = jnp.where(can, rt - 1 if not order else rt + 1, rt)
            rtc = jnp.clip(rt, 0, R - 1)
            blocked = (rule_exists_j[rtc] & ~rule_mask_j[rtc, dk]) if has_md else jnp.zeros((B,), bool)
            if order:  # inner-to-outer dummies take the scalar subtile
                sub = jnp.where((seek & can & blocked)[:, None] & (rid[None] == rtc[:, None]), 1.0, sub)
            assigned = assigned | (can & ~blocked)
        take = seek & assigned
        fail = fail | (seek & ~assigned)
        r = jnp.where(take, rt, r)
        rc = jnp.clip(r, 0, R - 1)
        sel = take[:, None] & (rid[None] == rc[:, None])
        box = jnp.where(sel[..., None] & ohk[:, None, :], box * sb[:, None, None], box)
        sub = jnp.where(sel, sk[:, None], sub)
        flat = (not has_md) | (rule_exists_j[rc] & rule_mask_j[rc, dk])
        ext = jnp.where(take, flat, ext)
        return (r, ext, box, sub, fail), None

    init = (r0, jnp.zeros((B,), bool), jnp.ones((B, R, D)), jnp.zeros((B, R)), fail0)
    (r, ext, box, sub, fail), _ = jax.lax.scan(step, init, xs)
    sub = jnp.where(sub == 0, sing0[:, None], sub)
    return jnp.moveaxis(box, 0, -1), sub, sing0, fail


def _ranks_direct(nest, ranks_t, S, active, sbound, key, place, count, inner, order, full, sing0, fail0):
    """The rank assignment in closed form when every rank has either no flattening rule or one
    that admits all of the dataspace's dimensions: the q-th active loop (in application order)
    opens the next rank until a rank with a rule is opened, which then takes every further loop.
    Per-loop vectors over the slots S: active, sbound, key, place (among the active loops,
    innermost first)."""
    R, D, B = len(full), nest.D, nest.B
    inner = inner.astype(jnp.int32)
    big = len(active) + R
    if order:  # ranks inner, inner + 1, ...; the first full rule at or above `inner` is sticky
        stop = fold.smallest([jnp.where(r >= inner, r - inner, big) for r in range(R) if full[r]]
                             or [jnp.full((B,), big, jnp.int32)])
    else:  # ranks R - 1, R - 2, ...
        stop = next((i for i in range(R) if full[R - 1 - i]), big)

    def box_of(on):  # [D, B]: per dimension the product of the loops `on` (per-loop [B] masks)
        return nest.per_dim([jnp.where(o, b, 1.0) for o, b in zip(on, sbound)], S)

    if not order and stop == 0:  # the outermost rank admits every loop: it takes them all
        ok = inner <= R - 1
        on = [a & ok for a in active]
        k_open = fold.largest([jnp.where(o, k, -1) for o, k in zip(on, key)])  # the outermost active loop
        sub = jnp.where(k_open >= 0, footprint(nest.upto(k_open), ranks_t, axis=0), sing0)
        return (jnp.stack([jnp.ones((D, B))] * (R - 1) + [box_of(on)]), jnp.stack([sing0] * (R - 1) + [sub], 1),
                sing0, (fold.any_of(active) & ~ok) | fail0)
    rank, opening, fail = [], [], []
    for a, p in zip(active, place):
        q = p if order else count - 1 - p  # place in application order
        i = jnp.minimum(q, stop)
        rk = inner + i if order else R - 1 - i
        ok = (rk >= inner) & (rk <= R - 1)
        fail.append(a & ~ok)
        rank.append(jnp.where(a & ok, rk, -1))
        opening.append(q == i)
    box, sub = [], []
    for r in range(R):
        if not order and r < R - 1 - stop:  # below the sticky rank: never opened
            box.append(jnp.ones((D, B)))
            sub.append(sing0)
            continue
        on = [rk == r for rk in rank]
        box.append(box_of(on))
        opened = [o & op for o, op in zip(on, opening)]
        k_open = fold.smallest([jnp.where(o, k, nest.N) for o, k in zip(opened, key)])
        sub.append(jnp.where(k_open < nest.N, footprint(nest.upto(k_open), ranks_t, axis=0), sing0))
    return jnp.stack(box), jnp.stack(sub, 1), sing0, fold.any_of(fail) | fail0


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
            if not has_md:
                # an uncompressed level without a format flattens all its loops into one rank that
                # spans its whole tile (only used when a compressed parent pre-tiles in its format)
                tl_ = tile[:, l, t]
                out[(l, t)] = {"n": 1, "fiber": jnp.concatenate([tl_[:, None], jnp.ones((B, Rmax - 1))], 1),
                               "sub": jnp.concatenate([jnp.ones((B, 1)), tl_[:, None], jnp.ones((B, Rmax - 1))], 1),
                               "has_md": False, "pretile": jnp.zeros((B,), bool)}
                continue
            kept = keep[:, l, t]
            c = child[:, l, t]
            comp = sp.compressed(l, t)
            ctile = _sel(c, tile[:, :, t]) if l else jnp.zeros((B,))
            pretile = (c >= 0) & (ctile > 1) & comp
            # child's ranks (for pre-tiling): count, fibers, subtiles, compressed formats
            inner = jnp.zeros((B,), jnp.int32)
            cf = jnp.ones((B, Rmax))
            cs = jnp.ones((B, Rmax + 1))
            for cl in range(l if comp else 0):
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
            E_child = jnp.ones((nest.D, B))  # the child's tile extents [D, B]
            for cl in range(l):
                E_child = jnp.where(c == cl, nest.E_bnd[cl], E_child)
            E_child = jax.lax.optimization_barrier(E_child)  # read by every loop of the nest
            order = f[0] if has_md else False
            box, sub_r, sing0, fl = _assign_ranks(sp, nest, ranks_t, rel, l, c, pretile, inner, E_child, order,
                                                  f[1] if has_md else (), has_md)
            fail = fail | (fl & kept)
            fiber_own = jnp.stack([footprint(box[r], ranks_t, axis=0) for r in range(R_l)], 1)
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


def _assemble(pairs, B, L, T, tail=(), rank_axis=None, R=1):
    """[B, L, T, *tail] from per-(level, dataspace) arrays {(l, t): [B, *tail]} (zeros for the
    missing pairs); with `rank_axis` (an axis of tail) each pair's rank axis is zero-padded to R."""
    rows = []
    for l in range(L):
        row = []
        for t in range(T):
            x = pairs.get((l, t))
            if x is None:
                shape = list(tail)
                if rank_axis is not None:
                    shape[rank_axis] = R
                x = jnp.zeros((B,) + tuple(shape))
            elif rank_axis is not None and x.shape[1 + rank_axis] < R:
                pad = [(0, 0)] * x.ndim
                pad[1 + rank_axis] = (0, R - x.shape[1 + rank_axis])
                x = jnp.pad(x, pad)
            row.append(x)
        rows.append(jnp.stack(row, 1))
    return jnp.stack(rows, 1)


# ----------------------------------------------------------------------------- occupancy

def _rank_units(code, max_fibers, fiber, pe_fib, pe_el):
    """(metadata units, payload units) of one rank (Timeloop's format models)."""
    fibers = max_fibers * (1.0 - pe_fib)
    zero = 0.0 * fibers * fiber
    if code == "UOP":
        return zero, fibers * (fiber + 1.0)
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
    return zero, zero  # U


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


# ----------------------------------------------------------------------------- storage SAFs

def saf_option(sp, static, nest, keep, child, models, block, level, target, conds, return_leaders=False):
    """Timeloop's ComputeIneffectualReadImpact: (probability a target access is optimized away,
    target level [B]) for one option at storage level `level`."""
    B, L, T = keep.shape
    N, D = nest.N, nest.D
    tl = spatial_skip.first_keeper(keep[:, :, target], level)
    ch = _sel(jnp.minimum(tl, L - 1), child[:, :, target])
    ch = jnp.where(tl < L, ch, -1)
    relT_d = _relevant(static, target)
    relT = relT_d[nest.dim]  # static per slot
    nt = [b > 1 for b in nest.bound]
    lv, spatial, key = nest.level, nest.spatial, nest.key
    # the target loop: the innermost non-trivial relevant loop above the child (else the
    # outermost loop of the target level), or at the compute level the last spatial loop of
    # level 0 unless a relevant non-trivial one comes first
    S = [s for s in range(N) if relT[s]]
    k_cand = nest.first([(lv[s] > ch) & (lv[s] <= tl) & nt[s] for s in S], S)
    last = jnp.zeros((B,), jnp.int32)
    for l in range(L):
        last = jnp.where(jnp.minimum(tl, L - 1) == l, nest.last[l], last)
    k_child = jnp.where(k_cand < N, k_cand, last)
    if sp.fanout[0]:
        S0 = nest.slots(level_max=0, spatial=True)
        k_compute = nest.first([(key[s] == D - 1) | (nt[s] & relT[s]) for s in S0], S0)
        scalar_compute = False
    else:
        k_compute = jnp.zeros((B,), jnp.int32)
        scalar_compute = True
    is_child = ch >= 0
    kt = jnp.where(is_child, k_child, k_compute)
    scalar = ~is_child & scalar_compute
    E_t = jnp.where(scalar, 1.0, nest.upto(kt))  # [D, B]
    at = [key[s] == kt for s in range(N)]
    is_sp = fold.any_of([at[s] for s in range(N) if spatial[s]]) if spatial.any() else jnp.zeros((B,), bool)
    tdim = fold.total([jnp.where(at[s], nest.dim[s], 0) for s in range(N)])
    # loops above the target loop within the target level
    a = [(key[s] > kt) & (lv[s] <= tl) & nt[s] for s in range(N)]
    # a spatial target stays put across the temporal loops above it until one relevant to the target
    trig = [a[s] & (~is_child | relT[s]) for s in range(N) if not spatial[s]]
    k_trig = nest.first(trig, [s for s in range(N) if not spatial[s]])
    inc = [a[s] & (True if spatial[s] else is_sp & (key[s] <= k_trig) & is_child & (not relT[s]))
           for s in range(N)]
    grow = nest.per_dim([jnp.where(inc[s], nest.bound[s], 1.0) for s in range(N)])  # [D, B]
    cE = E_t * grow
    rl = [(at[s] | inc[s]) & ~scalar for s in range(N)]
    tgt_gran = footprint(E_t, static.ranks[target], axis=0)
    blk = _sel(jnp.minimum(tl, L - 1), jnp.broadcast_to(block[None], (B, L)))
    p_eff = jnp.ones((B,))
    grans = []
    for c in conds:
        relC_d = _relevant(static, c)
        co = relT_d & relC_d
        Sc = [s for s in range(N) if co[nest.dim[s]]]
        co_slot = [rl[s] for s in Sc]
        k_co = nest.first(co_slot, Sc)  # loops above the first co-iterated one
        ineff = fold.any_of([rl[s] & (key[s] > k_co) for s in range(N) if relC_d[nest.dim[s]]] or
                            [jnp.zeros((B,), bool)]) & is_sp
        cf = nest.per_dim([jnp.where(m, nest.bound[s], 1.0) for m, s in zip(co_slot, Sc)], Sc)  # [D, B]
        touched = [fold.any_of([m for m, s in zip(co_slot, Sc) if nest.dim[s] == d]) if co[d] else None
                   for d in range(D)]  # a co-iterated loop of that dimension
        agg = fold.product(cf, 0)
        scaling = jnp.ceil(blk / (tgt_gran / agg))
        cols = []
        for d in range(D):
            if touched[d] is None:
                cols.append(cE[d])
                continue
            eff = cf[d] / scaling
            cols.append(jnp.where(touched[d], jnp.ceil(cE[d] / eff), cE[d]))
            scaling = jnp.where(touched[d], scaling / cf[d], scaling)
        big = scaling > 1
        cE2 = jnp.stack([jnp.where((tdim == d) & big, cols[d] * scaling, cols[d]) for d in range(D)])
        gran = footprint(cE2, static.ranks[c], axis=0)
        pe = models[c].p_empty(gran)
        p_eff = p_eff * jnp.where(ineff, 1.0, 1.0 - pe)
        grans.append(jnp.where(ineff, -1.0, gran))
    if return_leaders:
        return 1.0 - p_eff, tl, ch, grans
    return 1.0 - p_eff, tl, ch


def storage_safs(sp, static, arr, nest, keep, child, models, occ):
    """Gating / skipping masks and probabilities [B, L, T] after option selection."""
    B, L, T = keep.shape
    gate = [jnp.zeros((B, L), bool)] * T
    skip = [jnp.zeros((B, L), bool)] * T
    prob = [jnp.zeros((B, L))] * T
    bad = jnp.zeros((B,), bool)
    block = arr["block"]
    e_rr = arr["e_read"]
    ratio_md = jnp.floor(arr["sp_md_default_bits"] / arr["sp_word_bits"])  # Timeloop: integer division
    gate, skip, prob = list(gate), list(skip), list(prob)
    for level, kind, options in sp.safs:
        res = []
        for target, conds in options:
            p, tl, ch = saf_option(sp, static, nest, keep, child, models, block, level, target, conds)
            tlc = jnp.minimum(tl, L - 1)
            e_data = _sel(tlc, occ["E_data"][:, :, target])
            mdl = jnp.where(ch >= 0, ch, tlc)
            e_md = _sel(mdl, occ["E_md_total"][:, :, target])
            o = e_data + e_md * _sel(tlc, jnp.broadcast_to(ratio_md[None], (B, L)))
            per_word = _sel(tlc, jnp.broadcast_to((e_rr / block)[None], (B, L)))
            sav = per_word * o * p
            res.append((p, tl, target, sav))
            bad = bad | (tl >= L)
        best = jnp.zeros((B,), jnp.int32)
        mx = jnp.zeros((B,))
        for i, (_, _, _, sav) in enumerate(res):
            ge = sav >= mx
            mx = jnp.where(ge, sav, mx)
            best = jnp.where(ge, i, best)
        for i, (p, tl, target, _) in enumerate(res):
            chosen = best == i
            oh = (tl[:, None] == jnp.arange(L)[None]) & chosen[:, None]  # [B, L]
            existing = (gate[target] | skip[target]) & oh
            prev = prob[target]
            replace = oh & (~existing | (prev < p[:, None]))
            gate[target] = jnp.where(replace, kind == "gating", gate[target])
            skip[target] = jnp.where(replace, kind == "skipping", skip[target])
            prob[target] = jnp.where(replace, p[:, None], prev)
    return jnp.stack(gate, 2), jnp.stack(skip, 2), jnp.stack(prob, 2), bad


# ----------------------------------------------------------------------------- occupancy

def occupancy(sp, static, arr, keep, parent, tile, fmts, models, reads, fills, updates):
    """Expected data / metadata occupancy, per-rank format accesses and capacities (Timeloop's
    CalculateExpectedOccupancy and CalculateExpectedMetaDataAccesses), vectorized over levels."""
    B, L, T = keep.shape
    E_data, avg, cap_data, vec_ratio = [], [], [], []
    E_md, cap_md, cap_bits = {}, {}, {}
    md_acc = {op: {} for op in ("read", "fill", "update")}
    thr_tab = jnp.asarray(arr["sp_vw_threshold"])  # [L, 10]
    blk = arr["block"][None, :]
    for t in range(T):
        m = models[t]
        kept = keep[:, :, t]
        n = jnp.where(kept, tile[:, :, t], 0.0)  # [B, L]
        k, p = m.pmf(n)  # [B, L, K]
        md_static = jnp.asarray([sp.format(l, t) is not None for l in range(L)])
        comp_static = jnp.asarray([sp.compressed(l, t) for l in range(L)])
        # empty tiles are never sent by a parent that has metadata: condition on non-empty
        par_md = md_static[jnp.minimum(parent[:, :, t], L - 1)] & (parent[:, :, t] < L)
        p0 = m.p_empty(n)
        cond = par_md & (p0 > 0) & (p0 < 1) & kept
        avg.append(jnp.where(cond, 1.0 - p0, 1.0))
        pc = jnp.where(cond[..., None], jnp.where(k == 0, 0.0, p / (1.0 - p0)[..., None]), p)
        ed = jnp.where(kept, fold.total(pc * k, -1), 0.0)
        E_data.append(ed)
        kmax = m.max_occupancy(n)
        cap_data.append(jnp.where(kept, jnp.where(comp_static[None], kmax, n), 0.0))
        ns = jnp.where(n > 0, n, 1.0)
        dens = ed / ns
        # statistical vector-width correction for small compressed tiles (VectorWidthCoefficientTable)
        idx = jnp.clip(jnp.where(dens >= 0.1, jnp.floor(dens / 0.1) - 1, 0).astype(jnp.int32), 0, 9)
        thr = jnp.take_along_axis(jnp.broadcast_to(thr_tab[None], (B, L, 10)), idx[..., None], axis=2)[..., 0]
        use = comp_static[None] & kept & (blk > 1) & (dens < 1.0) & (thr > jnp.floor(n / blk))
        tot = fold.total(jnp.ceil(k / blk[..., None]) * jnp.where(k >= 1, p, 0.0), -1)
        naive = n * dens / blk
        vec_ratio.append(jnp.where(use & (naive > 0), tot / jnp.where(naive > 0, naive, 1.0), 1.0))
        for l in range(L):
            f = sp.format(l, t)
            if f is None:
                continue
            codes = [c for c, _ in f[1]]
            Rl = len(codes)
            fo = fmts[(l, t)]
            fiber, sub = fo["fiber"][:, :Rl], fo["sub"][:, :Rl + 1]
            kl = kept[:, l]
            # every possible occupancy, plus the maximum one (capacity), in one evaluation
            kk = jnp.concatenate([k[:, l], kmax[:, l, None]], axis=1)
            units = metadata_given(m, codes, fiber, sub, n[:, l], kk)  # [B, Rl, K + 1, 2]
            e = (units[:, :, :-1] * pc[:, l, None, :, None]).sum(2)
            e = jnp.where(kl[:, None, None], e, 0.0)
            E_md[(l, t)] = e
            ucap = jnp.where(kl[:, None, None], units[:, :, -1], 0.0)  # [B, Rl, 2]
            cap_md[(l, t)] = jnp.ceil(ucap)
            wbits = jnp.stack([arr["sp_md_bits"][l, t, :Rl], arr["sp_pl_bits"][l, t, :Rl]], -1)[None]
            cap_bits[(l, t)] = jnp.ceil(fold.total(fold.total(ucap * wbits, 2), 1))
            for op, cnt in (("read", reads), ("fill", fills), ("update", updates)):
                ratio = cnt[:, l, t] / ns[:, l]
                acc = jnp.ceil(e * ratio[:, None, None])
                md_acc[op][(l, t)] = jnp.where(kl[:, None, None], acc, 0.0)
    st = lambda xs: jnp.stack(xs, 2)  # noqa: E731
    E_md_total = _assemble({k: fold.total(fold.total(v, 2), 1) for k, v in E_md.items()}, B, L, T)
    return {"E_data": st(E_data), "E_md": E_md, "E_md_total": E_md_total,
            "avg": st(avg), "cap_data": st(cap_data), "cap_md": cap_md, "cap_bits": cap_bits,
            "md_acc": md_acc, "vec_ratio": st(vec_ratio)}


# ----------------------------------------------------------------------------- combination

def combine(sp, static, keep, child, tile, occ, reads, fills, updates, gate, skip, prob, computes, sskip=None):
    """Compression, local SAF impact and propagation (Timeloop's CombineStorageOptimizationImpact).

    A SAF at level l with probability p removes floor(x p) of the fills, reads and updates of
    every inner level down to (and including) the next level with its own SAF, whose local
    probability then acts as 1 - (1 - p_local) / (1 - p) on what is left; only the innermost
    SAF of a read-only tensor reaches the computes. Each level is thus reduced by at most its
    nearest SAF above, which makes the update elementwise over levels.

    Returns counts [kind][op] [B, L, T] (kinds random/gated/skipped; ops read/fill/update),
    format counts {(l, t): [B, 9, R_l, 2]} for the formatted pairs only, computes after
    eliminations, and per read-only operand whether a storage SAF reached the computes and its
    rounded probability."""
    B, L, T = keep.shape
    datas, fmts = [], {}
    gs_saf, inner_p = {}, {}
    for t in range(T):
        rw = static.read_write[t]
        md_static = np.array([sp.format(l, t) is not None for l in range(L)])
        md_eff = keep[:, :, t] & jnp.asarray(md_static)[None]  # [B, L]
        nr = jnp.where(md_eff, jnp.asarray([sp.n_ranks(l, t) for l in range(L)])[None], 0)
        n = jnp.where(keep[:, :, t], tile[:, :, t], 0.0)
        sparsity = 1.0 - occ["E_data"][:, :, t] / jnp.where(n > 0, n, 1.0)
        Rd, Fd, Ud = reads[:, :, t], fills[:, :, t], updates[:, :, t]
        mR = jnp.where(md_eff, Rd - jnp.floor(Rd * sparsity), Rd)
        mF = jnp.where(md_eff, Fd - jnp.floor(Fd * sparsity), Fd)
        mU = jnp.where(md_eff & rw, Ud - jnp.floor(Ud * sparsity), Ud)
        has = gate[:, :, t] | skip[:, :, t]
        local = has  # spatial skipping has no impact at its own level, only below it
        if sskip is not None:
            has = has | sskip[:, :, t]
        pr = prob[:, :, t]
        # nearest SAF level above each level (its probability p_src) and the source's rank count
        src_p, src_on, src_nr1 = [None] * L, [None] * L, [None] * L
        cur_on = jnp.zeros((B,), bool)
        cur_p = jnp.zeros((B,))
        cur_nr1 = jnp.zeros((B,), bool)
        for l in range(L - 1, -1, -1):
            src_on[l], src_p[l], src_nr1[l] = cur_on, cur_p, cur_nr1
            cur_on = cur_on | has[:, l]
            cur_p = jnp.where(has[:, l], pr[:, l], cur_p)
            cur_nr1 = jnp.where(has[:, l], md_eff[:, l] & (nr[:, l] == 1), cur_nr1)
        on = jnp.stack(src_on, 1)
        ps = jnp.stack(src_p, 1)
        nr1 = jnp.stack(src_nr1, 1)
        mF = jnp.where(on, mF - jnp.floor(mF * ps), mF)
        mR = jnp.where(on, mR - jnp.floor(mR * ps), mR)
        mU = jnp.where(on, mU - jnp.floor(mU * ps), mU)
        eff = jnp.where(on, 1.0 - (1.0 - pr) / jnp.where(ps != 1.0, 1.0 - ps, 1.0), pr)
        eff = jnp.where(local, eff, 0.0)
        dR = jnp.ceil(mR * eff) if rw else jnp.floor(mR * eff)
        dU = jnp.floor(mU * eff)
        is_g, is_s = gate[:, :, t] & local, ~gate[:, :, t] & local  # the level's SAF gates / skips
        z = jnp.zeros_like(mR)
        # [kind][op]: kinds random (actual), gated, skipped; ops read, fill, update
        datas.append([[jnp.where(keep[:, :, t], x, 0.0) for x in row] for row in (
            (mR - dR, mF, mU - dU), (jnp.where(is_g, dR, 0.0), z, jnp.where(is_g, dU, 0.0)),
            (jnp.where(is_s, dR, 0.0), z, jnp.where(is_s, dU, 0.0)))])
        # format accesses, only where the level has a format
        ch = child[:, :, t]
        for l in range(L):
            if not md_static[l]:
                continue
            Rl = sp.n_ranks(l, t)
            fR, fF, fU = (occ["md_acc"][op][(l, t)] for op in ("read", "fill", "update"))  # [B, Rl, 2]
            # Timeloop scales only rank 0 of an inner level's format, and only below a one-rank format
            sc = on[:, l] & keep[:, l, t] & nr1[:, l]
            r0 = (jnp.arange(Rl) == 0)[None, :, None] & sc[:, None, None]
            ps_l = ps[:, l, None, None]
            fF = jnp.where(r0, fF - jnp.floor(fF * ps_l), fF)
            fR = jnp.where(r0, fR - jnp.floor(fR * ps_l), fR)
            # ranks a read sends to the child (all of this level's ranks when the child is compute)
            chl = ch[:, l]
            n_child = jnp.where(chl >= 0, _sel(jnp.maximum(chl, 0), nr), nr[:, l])
            rmask = (jnp.arange(Rl)[None] < n_child[:, None])[..., None]  # [B, Rl, 1]
            eff_l = eff[:, l, None, None]
            dfr = jnp.where(rmask, jnp.floor(fR * eff_l), 0.0)
            dfu = jnp.where(rmask, jnp.floor(fU * eff_l), 0.0)
            g_l, s_l = is_g[:, l, None, None], is_s[:, l, None, None]
            gated, skipped = jnp.where(g_l, dfr, 0.0), jnp.where(s_l, dfr, 0.0)
            gated_u, skipped_u = jnp.where(g_l, dfu, 0.0), jnp.where(s_l, dfu, 0.0)
            z = jnp.zeros_like(fF)
            # 9 = 3 kinds (random, gated, skipped) x 3 ops (read, fill, update)
            f9 = jnp.stack([fR - dfr, fF, fU - dfu, gated, z, gated_u, skipped, z, skipped_u], 1)
            fmts[(l, t)] = jnp.where(keep[:, l, t, None, None, None], f9, 0.0)
        # the innermost SAF of a read-only tensor eliminates computes
        low_on = jnp.zeros((B,), bool)
        low_p = jnp.zeros((B,))
        for l in range(L - 1, -1, -1):
            low_on = low_on | has[:, l]
            low_p = jnp.where(has[:, l], pr[:, l], low_p)
        if not rw:
            computes = jnp.where(low_on, computes - jnp.floor(computes * low_p), computes)
            gs_saf[t] = low_on
            inner_p[t] = jnp.where(low_on, _round6(low_p), 0.0)
        else:
            gs_saf[t] = jnp.zeros((B,), bool)
            inner_p[t] = jnp.zeros((B,))
    data = [[jnp.stack([datas[t][k][o] for t in range(T)], 2) for o in range(3)] for k in range(3)]
    return data, fmts, computes, gs_saf, inner_p


# ----------------------------------------------------------------------------- computes

def classify_computes(sp, static, keep, models, total, gs_saf, inner_p):
    """Timeloop's two-operand compute classification (CalculateFineGrainedComputeAccesses2Operand):
    (random, gated, skipped) computes [B]."""
    B, L, T = keep.shape
    ro = [t for t in range(T) if not static.read_write[t]]
    if len(ro) != 2:
        return total, jnp.zeros_like(total), jnp.zeros_like(total)
    st = {}
    for t in ro:
        inner = jnp.full((B,), L, jnp.int32)
        for l in range(L - 1, -1, -1):
            inner = jnp.where(keep[:, l, t], l, inner)
        md = jnp.zeros((B,), bool)
        for l in range(L):
            if sp.format(l, t) is not None:
                md = md | (inner == l)
        d = _round6(_round6(models[t].scalar_density()) * jnp.ones((B,)))
        st[t] = {"md": md, "d": d, "ENZ": d, "EZ": jnp.where(md, 0.0, 1.0 - d), "NE": jnp.where(md, 1.0 - d, 0.0)}
    a, b = ro

    def renorm(op, other):
        ratio = 1.0 - inner_p[other]
        q = st[op]["d"] / jnp.where(ratio != 0, ratio, 1.0)
        md = st[op]["md"]
        return {"ENZ": q, "EZ": jnp.where(md, 0.0, 1.0 - q), "NE": jnp.where(md, 1.0 - q, 0.0)}

    ga, gb = gs_saf[a], gs_saf[b]
    ra, rb = renorm(a, b), renorm(b, a)
    sa = {s: jnp.where(gb, ra[s], st[a][s]) for s in ("ENZ", "EZ", "NE")}
    sb = {s: jnp.where(ga, rb[s], st[b][s]) for s in ("ENZ", "EZ", "NE")}
    for s_ in (sa, sb):
        for k in s_:
            s_[k] = jnp.clip(s_[k], 0.0, 1.0)
    P = lambda x, y: sa[x] * sb[y]  # noqa: E731
    gated = jnp.zeros_like(total)
    skipped = jnp.zeros_like(total)
    t_ = total
    if sp.compute_gating:
        gated = gated + t_ * (P("ENZ", "EZ") + P("EZ", "ENZ"))
    d37 = t_ * (P("ENZ", "NE") + P("NE", "ENZ"))
    if sp.compute_skipping:
        skipped = skipped + d37
    elif sp.compute_gating:
        gated = gated + d37
    if sp.compute_gating:
        gated = gated + t_ * P("EZ", "EZ")
    d68 = t_ * (P("EZ", "NE") + P("NE", "EZ"))
    if sp.compute_skipping:
        skipped = skipped + d68
    elif sp.compute_gating:
        gated = gated + d68
    nonexistent = t_ * P("NE", "NE")
    random = total - jnp.floor(skipped) - jnp.floor(gated) - jnp.floor(nonexistent)
    return random, jnp.floor(gated), jnp.floor(skipped)


# ----------------------------------------------------------------------------- energy, cycles

def storage_energy(sp, arr, data, fmt, occ, keep, tile, instances, dec, avg_ratio=None):
    """pJ per level and dataspace [B, L, T] over all instances, from vector accesses x ERT, and the
    format bits per formatted pair {(l, t): [B, 9]}. `data` [kind][op] [B, L, T] (combine's
    counts), `fmt` {(l, t): [B, 9, R_l, 2]}, `dec`
    {(l, t): ([B] decompressions, [B] compressions)}; `avg_ratio` [B, L, T]: the fraction of
    instances utilized on average (spatial skipping)."""
    B, L, T = keep.shape
    n = jnp.where(keep, tile, 0.0)
    blk, ratio = arr["block"][None, :, None], occ["vec_ratio"]

    def vec(x):  # vector accesses
        return jnp.where((x > 0) & (n > 0), jnp.ceil(x / blk) * ratio, x)

    e = arr["sp_e"]  # [L, 20]
    # data actions: ACTIONS order is kind-major within op: (random,gated,skipped) x read, fill, update
    kinds, ops = ("random", "gated", "skipped"), ("read", "fill", "update")
    e_data = jnp.stack([e[:, A[f"{k}_{o}"]] for k in kinds for o in ops], -1)
    e_data = e_data.reshape(L, 3, 3)
    e_md = jnp.stack([e[:, A[f"{k}_metadata_{o}"]] for k in kinds for o in ops], -1)
    # the MICRO'22 artifact's Timeloop charged skipped metadata reads at the random metadata-read energy
    charge = (arr["sp_charge_skipped_metadata_as_actual"] > 0) | sp.charge_skipped_metadata_as_actual
    e_md = jnp.where((jnp.arange(9) == 2 * 3 + 0)[None] & charge, e[:, A["random_metadata_read"]][:, None], e_md)
    md_e, bits = {}, {}
    for (l, t), f in fmt.items():
        Rl = f.shape[2]
        wb = jnp.stack([arr["sp_md_bits"][l, t, :Rl], arr["sp_pl_bits"][l, t, :Rl]], -1)  # [Rl, 2]
        b = fold.total(fold.total(f * wb[None, None], -1), -1)  # [B, 9]
        bits[(l, t)] = b
        w = arr["sp_md_width"][l]
        md_vec = jnp.where(w > 0, jnp.ceil(b / jnp.where(w > 0, w, 1.0)), 0.0)
        md_e[(l, t)] = fold.total(md_vec * e_md[l][None], -1)
    e_dec = {k: v[0] * e[k[0], A["decompression_count"]] for k, v in dec.items()}
    e_com = {k: v[1] * e[k[0], A["compression_count"]] for k, v in dec.items()}
    per_inst = (fold.total([fold.total([vec(data[k][o]) * e_data[:, k, o][None, :, None] for o in range(3)])
                            for k in range(3)]) + _assemble(md_e, B, L, T) + _assemble(e_dec, B, L, T)
                + _assemble(e_com, B, L, T))
    if avg_ratio is None:
        charged = jnp.minimum(instances, arr["instances"] / arr["cluster"])[:, :, None]
    else:  # the average utilized instances, which must fit the hardware (the mapping may over-subscribe it)
        charged = jnp.minimum(instances[:, :, None] * avg_ratio, (arr["instances"] / arr["cluster"])[None, :, None])
    return per_inst * charged, bits


def level_cycles(arr, data, bits, scale, cc):
    """Timeloop's BufferLevel::ComputePerformance with sparse accesses; skipped ones use no bandwidth.
    `data` [kind][op] [B, L, T]; `bits` {(l, t): [B, 9]} format bits of the formatted pairs;
    `scale` [B, L, T] max / average utilized instances."""
    B, L, T = data[0][0].shape
    md_rd, md_wr = {}, {}
    for (l, t), b in bits.items():
        wb = arr["sp_word_bits"][l]
        md_rd[(l, t)] = jnp.floor((b[:, 0] + b[:, 3]) / wb)
        md_wr[(l, t)] = jnp.floor((b[:, 1] + b[:, 4] + b[:, 2] + b[:, 5]) / wb)
    rd = data[0][0] + data[1][0] + _assemble(md_rd, B, L, T)
    wr = data[0][1] + data[1][1] + data[0][2] + data[1][2] + _assemble(md_wr, B, L, T)
    rd = jnp.ceil(rd / scale)
    wr = jnp.ceil(wr / scale)
    bw = lambda k: arr[k][None]  # noqa: E731
    return latency.bandwidth_cycles(jnp.maximum(cc, 1.0)[:, None], [rd[..., t] for t in range(T)],
                                    [wr[..., t] for t in range(T)], bw("read_bw"), bw("write_bw"), bw("shared_bw"))


# ----------------------------------------------------------------------------- driver

def apply(sp, static, arr, dense):
    """Sparse statistics of a batch. `dense` holds the dense kernel's arrays: temporal, spatial
    [B, L, D] (float), perm [B, L, D], keep [B, L, T], tile, reads, fills, updates [B, L, T],
    t_total [B], instances [B, L], mac_inst [B]."""
    keep = dense["keep"]
    tile = dense["tile"].astype(jnp.float64)
    reads, fills, updates = dense["reads"], dense["fills"], dense["updates"]
    B, L, T = keep.shape
    nest = Nest(sp.fanout, *dense["loops"], jnp.moveaxis(dense["sy"], 0, -1) > 1)
    child, parent = _child_parent(keep)
    models = [dmodel.model(sp.density_kind[t], arr["sp_density"][t], arr["sp_tensor_size"][t], sp.grid)
              for t in range(T)]
    fmts, fmt_fail = formats(sp, static, nest, keep, tile, child)
    occ = occupancy(sp, static, arr, keep, parent, tile, fmts, models, reads, fills, updates)
    gate, skip, prob, saf_bad = storage_safs(sp, static, arr, nest, keep, child, models, occ)
    algorithmic = dense["t_total"] * dense["mac_inst"]
    inst = dense["instances"][:, :, None]
    unsupported = jnp.zeros((B,), bool)
    if sp.spatial_safs:  # utilized instances from spatial skipping (and the compressed dataspaces' own)
        ss = spatial_skip.analyse(sp, static, models, keep, child, nest, dense["sx"], dense["sy"], dense["mac_inst"],
                                  arr["fanout_x"], arr["fanout_y"])
        unsupported = ((gate | skip) & ss["sskip"]).any((1, 2))  # Timeloop asserts against both at one level
        prob = jnp.where(ss["sskip"], ss["sprob"], prob)
        ratio, max_inst, sskip = ss["ratio"], ss["max"], ss["sskip"]
        mac_max, mac_avg = ss["mac_max"], jnp.maximum(ss["mac_avg"], 1.0)
        fanout = (ss["fanout_x"], ss["fanout_y"])
    else:  # empty tiles below a parent with metadata are never sent (CalculateExpectedOccupancy)
        ratio, max_inst, sskip = occ["avg"], jnp.broadcast_to(inst, keep.shape), None
        mac_max = mac_avg = dense["mac_inst"]
        fanout = None
    data, fmt, after, gs, ip = combine(sp, static, keep, child, tile, occ, reads, fills, updates, gate, skip, prob,
                                       algorithmic, sskip)
    random, gated, skipped = classify_computes(sp, static, keep, models, after, gs, ip)
    # (de)compression between a compressed parent and an uncompressed child
    dec = {}  # (l, t) -> ([B] decompressions, [B] compressions), only where a compressed parent can exist
    for t in range(T):
        for l in range(L):
            if sp.compressed(l, t):
                continue
            par_levels = [pl for pl in range(l + 1, L) if sp.compressed(pl, t)]
            if par_levels:
                par = parent[:, l, t]
                pc = jnp.zeros((B,), bool)
                for pl in par_levels:
                    pc = pc | (par == pl)
                pc = pc & keep[:, l, t]
                d_ = jnp.where(pc, data[0][1][:, l, t], 0.0)
                if static.read_write[t]:
                    c_ = jnp.where(pc, _sel(jnp.minimum(par, L - 1), data[0][2][:, :, t]), 0.0)
                else:
                    c_ = jnp.zeros((B,))
                dec[(l, t)] = (d_, c_)
                if not sp.decompression_supported[l]:
                    unsupported = unsupported | pc
                if static.read_write[t] and not sp.compression_supported[l]:
                    unsupported = unsupported | pc
            child_levels = [cl for cl in range(l) if sp.compressed(cl, t)]
            if child_levels:
                ch = child[:, l, t]
                cc_ = jnp.zeros((B,), bool)
                for cl in child_levels:
                    cc_ = cc_ | (ch == cl)
                unsupported = unsupported | (cc_ & keep[:, l, t])
    avg_ratio = ratio if sp.spatial_safs else None  # energy over the average utilized instances
    e_ds, bits = storage_energy(sp, arr, data, fmt, occ, keep, tile, dense["instances"], dec, avg_ratio)
    cc = jnp.ceil((random + gated) / mac_avg)
    avg_inst = inst * ratio
    lc = level_cycles(arr, data, bits, jnp.where(avg_inst > 0, max_inst / jnp.where(avg_inst > 0, avg_inst, 1.0), 1.0),
                      cc)
    cycles = jnp.maximum(cc, fold.largest(lc, 1))
    used = fold.total(jnp.where(keep, occ["cap_data"], 0.0), 2)
    cap = fold.any_of(used > arr["size"][None], 1)
    md_bits = fold.total(jnp.where(keep, _assemble(occ["cap_bits"], B, L, T), 0.0), 2)
    md_cap = fold.any_of((md_bits > arr["sp_md_capacity_bits"][None]) & jnp.isfinite(arr["size"])[None], 1)
    e_mac = random * arr["sp_e_compute"][0] + gated * arr["sp_e_compute"][1] + skipped * arr["sp_e_compute"][2]
    return {"data": data, "fmt": fmt, "energy_ds": e_ds, "level_cycles": lc, "cycles": cycles,
            "compute_cycles": cc, "algorithmic": algorithmic, "random": random, "gated": gated,
            "skipped": skipped, "compute_energy": e_mac, "capacity": cap, "md_capacity": md_cap,
            "format_fail": fmt_fail | saf_bad, "unsupported": unsupported, "data_capacity": occ["cap_data"],
            "format_capacity": occ["cap_md"], "avg": ratio, "max_inst": max_inst, "mac_max": mac_max,
            "mac_avg": mac_avg, "fanout": fanout, "dec": dec, "E_data": occ["E_data"],
            "gate": gate, "skip": skip, "prob": prob}


def with_artifact_charging(arr, on=True):
    """Arrays that charge skipped metadata reads at the actual metadata-read energy (the
    MICRO'22 Sparseloop artifact's behaviour); no recompilation."""
    return dict(arr, sp_charge_skipped_metadata_as_actual=np.float64(1.0 if on else 0.0))


def internals(static, arr, batch):
    """Mapping-dependent intermediates for testing against jaxloop.sparse_reference (jittable with
    static as a static argument): per formatted (level, dataspace) the fiber shapes and sub-tile
    sizes, the format-fail flag, and per SAF option (target level, leader tile size per
    condition-on dataspace; -1 when the option is ineffective), and with spatial skipping
    `spatial_skip.analyse`'s instances ("spatial")."""
    sp = static.sparse
    temporal = batch.temporal.astype(jnp.float64)
    spatial = (batch.spatial_x * batch.spatial_y).astype(jnp.float64)
    keep = batch.keep.astype(bool) & jnp.asarray(static.keepable)[None]
    E_bnd = extents(temporal, spatial)[0]
    tile = jnp.stack([footprint(E_bnd, r) for r in static.ranks], axis=2)
    nest = _nest(sp, temporal, spatial, batch.perm, batch.spatial_y)
    child, _ = _child_parent(keep)
    models = [dmodel.model(sp.density_kind[t], arr["sp_density"][t], arr["sp_tensor_size"][t], sp.grid)
              for t in range(len(static.ranks))]
    fm, fail = formats(sp, static, nest, keep, tile, child)
    out = {"fiber": {k: v["fiber"][:, :v["n"]] for k, v in fm.items() if v["has_md"]},
           "sub": {k: v["sub"][:, :v["n"] + 1] for k, v in fm.items() if v["has_md"]}, "fail": fail, "saf": []}
    for level, kind, options in sp.safs:
        for target, conds in options:
            _, tl, _, grans = saf_option(sp, static, nest, keep, child, models, arr["block"], level, target, conds,
                                         return_leaders=True)
            out["saf"].append((tl, grans))  # in the order of sp.safs and their options
    if sp.spatial_safs:
        sx, sy = batch.spatial_x.astype(jnp.float64), batch.spatial_y.astype(jnp.float64)
        mac_inst = jnp.prod(spatial, axis=(1, 2))
        out["spatial"] = spatial_skip.analyse(sp, static, models, keep, child, nest, sx, sy, mac_inst,
                                              arr["fanout_x"], arr["fanout_y"])
    return out


def extend_stats(static, arr, st, d):
    """Fill the Sparseloop fields of a dense Stats `st` (evaluate.py calls this last).

    Dense designs (static.sparse None) get actual = algorithmic counts and zero gated/skipped/
    metadata terms. Sparse designs also get energy, leakage, cycles, utilization and the status
    bits recomputed from the sparse counts."""
    from jaxloop.model import energy, status

    keep = d["keep"]
    sp = static.sparse
    if sp is None:
        z = jnp.zeros_like(st.reads)
        inst = jnp.where(keep, st.instances[:, :, None], 0.0)
        return st._replace(
            actual_reads=st.reads, gated_reads=z, skipped_reads=z, actual_fills=st.fills, gated_fills=z,
            skipped_fills=z, actual_updates=st.updates, gated_updates=z, skipped_updates=z, metadata_reads=z,
            metadata_fills=z, metadata_updates=z, format_accesses=jnp.zeros(z.shape + (9, 1, 2)),
            data_capacity=jnp.where(keep, st.tile, 0.0), format_capacity=jnp.zeros(z.shape + (1, 2)),
            avg_instances=inst, max_instances=inst, avg_mac_instances=st.mac_instances,
            algorithmic_computes=st.computes, actual_computes=st.computes,
            gated_computes=jnp.zeros_like(st.computes), skipped_computes=jnp.zeros_like(st.computes),
            compute_cycles=d["t_total"])
    out = apply(sp, static, arr, dict(d, tile=st.tile, reads=st.reads, fills=st.fills, updates=st.updates,
                                      mac_inst=st.mac_instances))
    data, fmt = out["data"], out["fmt"]
    cycles = jnp.maximum(out["cycles"], d["analog_cycles"])
    leak = energy.leakage(arr, cycles, d["instances"].T).T
    total = (fold.total(fold.total(out["energy_ds"], 2), 1) + fold.total(leak, 1) + out["compute_energy"]
             + st.converter_energy.sum(1))
    util = out["random"] / arr["mac_instances"] / cycles
    fm = status.FLAG_MEANINGS
    code = st.status & ~jnp.asarray(1 << fm.index("capacity"), st.status.dtype)
    flags = [("capacity", out["capacity"]), ("sparse_format", out["format_fail"]),
             ("metadata_capacity", out["md_capacity"]), ("sparse_unsupported", out["unsupported"])]
    if out["fanout"] is not None:  # spatial skipping: the fan-out that must fit is the reduced one
        code = code & ~jnp.asarray((1 << fm.index("fanout_x")) | (1 << fm.index("fanout_y")), code.dtype)
        flags += [("fanout_x", out["fanout"][0]), ("fanout_y", out["fanout"][1])]
    for name, flag in flags:
        code = code | (flag.astype(code.dtype) << fm.index(name))
    B, L, T = keep.shape
    # random metadata reads, fills, updates
    units = _assemble({k: fold.total(fold.total(f[:, :3], -1), -1) for k, f in fmt.items()}, B, L, T, (3,))
    inst = jnp.where(keep, st.instances[:, :, None] * out["avg"], 0.0)
    return st._replace(
        mac_instances=out["mac_max"], avg_mac_instances=out["mac_avg"],
        max_instances=jnp.where(keep, out["max_inst"], 0.0),
        energy_ds=out["energy_ds"], leak=leak, level_cycles=out["level_cycles"], compute_energy=out["compute_energy"],
        energy=total, cycles=cycles, utilization=util, status=code,
        actual_reads=data[0][0], gated_reads=data[1][0], skipped_reads=data[2][0],
        actual_fills=data[0][1], gated_fills=data[1][1], skipped_fills=data[2][1],
        actual_updates=data[0][2], gated_updates=data[1][2], skipped_updates=data[2][2],
        metadata_reads=units[..., 0], metadata_fills=units[..., 1], metadata_updates=units[..., 2],
        format_accesses=_assemble(fmt, B, L, T, (9, sp.R, 2), rank_axis=1, R=sp.R),
        data_capacity=jnp.where(keep, out["data_capacity"], 0.0),
        format_capacity=_assemble(out["format_capacity"], B, L, T, (sp.R, 2), rank_axis=0, R=sp.R),
        avg_instances=inst, algorithmic_computes=out["algorithmic"], actual_computes=out["random"],
        gated_computes=out["gated"], skipped_computes=out["skipped"], compute_cycles=out["compute_cycles"])
