"""Mappings as integer tensors, and the mapspace they are drawn from.

MappingBatch: a batch of B mappings of one architecture and workload. Shapes: temporal,
spatial_x, spatial_y, perm are [B, L, D]; keep is [B, L, T]. Level 0 is the innermost storage
level. perm[b, l] lists dimension indices innermost first.

Mapspace: every mapping allowed by Timeloop-style constraints (jaxloop.constraints), counted
exactly and indexed by a bijection 0 .. size-1 <-> mapping that decodes on device (see the
comment block above `class Mapspace` for what is enumerated and which equivalences are merged).
"""

from typing import NamedTuple

import numpy as np

from jaxloop.errors import SpecError
from jaxloop.spec.mapping import Mapping


class MappingBatch(NamedTuple):
    temporal: np.ndarray
    spatial_x: np.ndarray
    spatial_y: np.ndarray
    perm: np.ndarray
    keep: np.ndarray

    @property
    def size(self):
        return self.temporal.shape[0]

    @classmethod
    def from_mappings(cls, mappings):
        return cls(*(np.stack([getattr(m, f) for m in mappings]).astype(np.int64 if f != "keep" else bool)
                     for f in cls._fields))

    def mapping(self, i):
        """Row i as a Mapping (exact round trip)."""
        row = [np.asarray(getattr(self, f)[i]) for f in self._fields]
        return Mapping(row[0].astype(np.int64), row[1].astype(np.int64), row[2].astype(np.int64),
                       row[3].astype(np.int64), row[4].astype(bool))

    def take(self, idx):
        return MappingBatch(*(np.asarray(a)[idx] for a in self))


# ====================================================================================== mapspace
#
# The mapspace of one (architecture, workload, constraints), as an exact bijection between the
# integers 0 .. size-1 and canonical mappings, decoded on device.
#
# What a mapping is made of, and which choices are kept apart:
#
# * Index factorization (IF): for every dimension an ordered tuple of factors over the slots
#   "temporal factor at level l" (l = 0..L-1) and "spatial factor below level l" (levels with a
#   fanout > 1), product = the bound. All factor constraints are boxes lo <= f <= hi per slot.
#   Safe pruning: a dimension's spatial factor larger than the fanout of every axis it may use
#   (a dimension's spatial loop runs wholly along X or along Y) is never valid, so it is left
#   out (`prune_fanout`, the default unless the design has spatial skipping, whose reduced
#   fan-out is what must fit: then, as in Timeloop's mapper, nothing is pruned; `size` counts
#   what is enumerated).
# * Loop order: per level, a permutation of the *non-unit* dimensions that are not fixed by a
#   permutation constraint (fixed prefix innermost, fixed suffix outermost, free ones between;
#   unit-factor loops are placed innermost, where they change nothing: the kernel treats a
#   bound-1 loop as absent). The innermost level's order never matters (no storage boundary
#   lies below its loops), nor does the order of a level with fewer than two free dimensions.
# * Bypass: every (level, dataspace) left free by the constraints, outermost level always keeps.
# * X/Y split of spatial loops: *not* a sub-space. The kernel's counts, energy and cycles depend
#   only on the spatial factors (sx * sy); X versus Y only decides whether the factors fit the
#   mesh. Decode therefore picks, among the assignments the constraints allow (permutation
#   prefix/suffix + split, as in Timeloop's "first `split` loops run along X"), the first one
#   that fits, or the first one if none fits (the kernel then flags the fanout). This merges
#   cost-identical mappings; tests/test_mapspace.py checks the invariance against the kernel.
#
# Counting and the bijection. The number of loop orders depends on the IF (k! for k non-unit
# free loops at a level), so the space is not a fixed mixed radix. Dimensions are decoded one
# after the other; a dimension that is non-unit at an order-carrying level is *inserted* into
# that level's order at one of k+1 positions (k = non-unit free dims placed so far), which is a
# bijection onto permutations (insertion encoding). The number of completions depends only on
# the per-level counts k, so a table C[d][state] (state = the count vector) gives the subtree
# sizes and decoding is a mixed-radix walk with data-dependent radices: per dimension a tiny
# cumulative sum over its "signatures" (which order-carrying levels it is non-unit at), then
# quotient/remainder for the tuple within the signature and its insertion positions. The
# bypass digit is the fastest. Everything is exact in int64 when size < 2**63 (`flat_decode`);
# larger spaces (never enumerable) are searched through genomes (factors, priorities, bits).

import itertools
import math
from dataclasses import dataclass as _dataclass

import jax
import jax.numpy as jnp
from jax import lax

MAX_TUPLES = 4_000_000  # per dimension
MAX_STATES = 4_000_000


def _bucket(n):
    """Batch size used for n mappings outside the search loop: a power of two, at least 64."""
    return max(64, 1 << max(0, int(n - 1).bit_length()))


def prime_factors(n):
    """[(p, e)] with n = prod p**e."""
    out, p = [], 2
    while p * p <= n:
        e = 0
        while n % p == 0:
            n //= p
            e += 1
        if e:
            out.append((p, e))
        p += 1
    if n > 1:
        out.append((n, 1))
    return out


def compositions(e, k):
    """All k-tuples of non-negative ints summing to e, as an array [C(e+k-1, k-1), k]."""
    if k == 0:
        return np.zeros((1 if e == 0 else 0, 0), np.int64)
    rows = []
    for bars in itertools.combinations(range(e + k - 1), k - 1):
        prev, row = -1, []
        for b in bars:
            row.append(b - prev - 1)
            prev = b
        row.append(e + k - 1 - prev - 1)
        rows.append(row)
    return np.array(rows, np.int64).reshape(-1, k)


def count_factorizations(n, k):
    """f(n, k) = number of ordered k-tuples of positive ints with product n (SPEC-dense 7.2)."""
    return math.prod(math.comb(e + k - 1, k - 1) for _, e in prime_factors(n)) if k else int(n == 1)


def ordered_factorizations(n, lo, hi, limit=MAX_TUPLES):
    """Every tuple f (len(lo) slots) with prod f = n and lo <= f <= hi, as an array [N, slots]."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    S = len(lo)
    fixed = lo == hi
    rest = n
    for v in lo[fixed]:
        if rest % int(v):
            return np.zeros((0, S), np.int64)
        rest //= int(v)
    free = np.nonzero(~fixed & (hi > 1))[0]
    part = np.ones((1, len(free)), np.int64)
    for p, e in prime_factors(rest):
        if len(free) == 0:
            return np.zeros((0, S), np.int64)
        comp = compositions(e, len(free))
        pw = p ** comp
        n_new = part.shape[0] * pw.shape[0]
        if n_new > 4 * limit:
            raise ValueError(f"too many factorizations of {n} over {len(free)} free slots (> {limit}); "
                             "add factor constraints")
        part = (part[:, None, :] * pw[None, :, :]).reshape(-1, len(free))
        part = part[(part <= hi[free]).all(axis=1)]
    part = part[(part >= lo[free]).all(axis=1)]
    if part.shape[0] > limit:
        raise ValueError(f"too many factorizations of {n} ({part.shape[0]} > {limit}); add factor constraints")
    out = np.ones((part.shape[0], S), np.int64)
    out[:, fixed] = lo[fixed]
    out[:, free] = part
    return out


def _x_sets(D, prefix, suffix, split, nonunit):
    """Which sets of the `nonunit` dims a spatial level may run along X, from its permutation
    constraint (prefix innermost / suffix outermost / free between) and split."""
    nu = frozenset(nonunit)
    out = set()
    if prefix is None:
        k = len(nu)
        for r in range(k + 1):
            for xs in itertools.combinations(sorted(nu), r):
                if split is None or (r <= split and k - r <= D - split):
                    out.add(frozenset(xs))
        return out
    fixed = set(prefix) | set(suffix)
    free = [d for d in range(D) if d not in fixed]
    for s in ([split] if split is not None else range(D + 1)):
        xs = {d for i, d in enumerate(prefix) if i < s} | {d for i, d in enumerate(suffix)
                                                             if len(prefix) + len(free) + i < s}
        cx = min(max(s - len(prefix), 0), len(free))
        for fx in itertools.combinations(free, cx):
            out.add(frozenset((xs | set(fx)) & nu))
    return out


@_dataclass(frozen=True)
class _Static:
    """Hashable decode structure (shapes and small tables) closed over by the jitted decode."""

    L: int
    D: int
    T: int
    S: int  # slots: L temporal + len(sp_levels) spatial
    sp_levels: tuple  # levels with a spatial slot
    pl: tuple  # order-carrying levels
    caps: tuple  # per order-carrying level: dims that can be free non-unit there
    nb: int  # bypass combinations
    free_keep: tuple  # ((level, dataspace), ...) free bypass bits, bit i
    flat: bool  # flat int64 decoding available (size < 2**63)


class Mapspace:
    """The mapspace of `spec` under `constraints` (a jaxloop.constraints.Constraints).

        ms = Mapspace(spec, constraints)
        ms.size                        # exact (Python int)
        batch = ms.decode(np.arange(1000))   # MappingBatch (jax arrays), on device
        ms.encode(batch.mapping(7))    # -> 7
    """

    def __init__(self, spec, constraints=None, prune_fanout=None):
        from jaxloop.constraints import Constraints
        from jaxloop.spec.sparse import parse_sparse

        if prune_fanout is None:  # Timeloop's mapper drops its fan-out filter when spatial skipping can
            prune_fanout = not any(s.kind == "skipping_spatial" for s in parse_sparse(spec).safs)  # shrink it
        c = constraints if constraints is not None else Constraints.empty(spec)
        self.spec, self.constraints, self.prune_fanout = spec, c, prune_fanout
        arch, wl = spec.arch, spec.workload
        L, D, T = len(arch.levels), len(wl.dims), len(wl.dataspaces)
        self.L, self.D, self.T = L, D, T
        self.bounds = tuple(int(b) for b in wl.bounds)
        self.fanout = [arch.fanout(lv) for lv in range(L)]
        self.sp_levels = tuple(lv for lv in range(L) if self.fanout[lv][0] * self.fanout[lv][1] > 1)
        S = L + len(self.sp_levels)
        self.S = S
        self.slot_names = [f"{arch.names[lv]}.temporal" for lv in range(L)] + \
                          [f"{arch.names[lv]}.spatial" for lv in self.sp_levels]

        # ---- boxes per (dim, slot)
        lo = np.ones((D, S), np.int64)
        hi = np.array([[b] * S for b in self.bounds], np.int64).reshape(D, S)
        slots = [c.temporal[lv] for lv in range(L)] + [c.spatial[lv] for lv in self.sp_levels]
        for s, sc in enumerate(slots):
            for d in range(D):
                lo[d, s], hi[d, s] = sc.bounds(d, self.bounds[d])
        self.box_unpruned = (lo.copy(), hi.copy())
        # ---- X/Y sets per spatial level (before fanout pruning of factors)
        self.x_masks = []
        for i, lv in enumerate(self.sp_levels):
            s = L + i
            sc = c.spatial[lv]
            nonunit = [d for d in range(D) if hi[d, s] > 1]
            sets = _x_sets(D, sc.prefix, sc.suffix, sc.split, nonunit)
            fx, fy = self.fanout[lv]
            if prune_fanout:
                for d in nonunit:
                    cap = max([fx] * any(d in x for x in sets) + [fy] * any(d not in x for x in sets) + [1])
                    hi[d, s] = min(hi[d, s], cap)
            self.x_masks.append(sets)
        self.box = (lo, hi)

        # ---- factor tables per dim
        self.tables = []
        for d in range(D):
            try:
                tab = ordered_factorizations(self.bounds[d], lo[d], hi[d])
            except ValueError as e:
                raise SpecError(f"dimension {wl.dims[d]}: {e}") from None
            if tab.shape[0] == 0:
                raise SpecError(f"no factorization of {wl.dims[d]}={self.bounds[d]} satisfies the constraints "
                                f"(per-slot bounds: " + ", ".join(f"{n}:[{a},{b}]" for n, a, b in
                                                                  zip(self.slot_names, lo[d], hi[d])) + ")")
            self.tables.append(tab)
        # spatial X-sets restricted to the dims that can really be non-unit, fitting ones first
        for i, lv in enumerate(self.sp_levels):
            s = L + i
            nonunit = frozenset(d for d in range(D) if self.tables[d][:, s].max() > 1)
            sets = {x & nonunit for x in self.x_masks[i]}
            fx, fy = self.fanout[lv]
            if prune_fanout:  # an axis with fanout 1 can hold no non-unit loop
                fit = {x for x in sets if (fx > 1 or not x) and (fy > 1 or not (nonunit - x))}
                sets = fit or sets
            order = sorted(sets, key=lambda x: (-len(x), sorted(x)))
            self.x_masks[i] = np.array([[d in x for d in range(D)] for x in order], bool).reshape(-1, D)

        # ---- order-carrying levels and free dims there
        self.free_dims = []
        for lv in range(L):
            sc = c.temporal[lv]
            fixed = set(sc.prefix or []) | set(sc.suffix or [])
            self.free_dims.append([d for d in range(D) if d not in fixed and self.tables[d][:, lv].max() > 1])
        self.pl = tuple(lv for lv in range(1, L) if len(self.free_dims[lv]) >= 2)
        # static order per level: prefix, free (by index), suffix; order levels overwrite the free part
        self.static_perm = np.zeros((L, D), np.int32)
        self.free_start = {}
        for lv in range(L):
            sc = c.temporal[lv]
            pre, suf = list(sc.prefix or []), list(sc.suffix or [])
            mid = [d for d in range(D) if d not in pre and d not in suf]
            if lv in self.pl:  # free dims that may be non-unit first, then the always-unit ones
                fd = self.free_dims[lv]
                mid = fd + [d for d in mid if d not in fd]
            self.free_start[lv] = len(pre)
            self.static_perm[lv] = pre + mid + suf
        P = len(self.pl)
        self.caps = tuple(len(self.free_dims[lv]) for lv in self.pl)

        # ---- signatures, sorted tables
        self.sig_opts, self.sig_n, self.sig_off = [], [], []
        for d in range(D):
            tab = self.tables[d]
            sig = np.zeros(tab.shape[0], np.int64)
            for j, lv in enumerate(self.pl):
                if d in self.free_dims[lv]:
                    sig |= (tab[:, lv] > 1).astype(np.int64) << j
            order = np.lexsort(tuple(tab[:, s] for s in reversed(range(S))) + (sig,))
            tab, sig = tab[order], sig[order]
            self.tables[d] = tab
            opts, first, counts = np.unique(sig, return_index=True, return_counts=True)
            self.sig_opts.append(opts)
            self.sig_n.append(counts.astype(np.int64))
            self.sig_off.append(first.astype(np.int64))

        # ---- bypass
        keep = c.keep.copy()
        keep[L - 1] = 1
        self.keep_base = keep == 1
        self.free_keep = tuple((lv, t) for lv in range(L - 1) for t in range(T) if keep[lv, t] == -1)
        self.nb = 1 << len(self.free_keep)
        # [L, T] can a mapping of this space keep dataspace t at level l: compile_spec(keepable=...)
        # then leaves the other pairs out of the kernel (same results, less work)
        self.keepable = self.keep_base | (keep == -1)

        # ---- completion counts C[d][state]
        radix = [cap + 1 for cap in self.caps]
        n_states = math.prod(radix)
        if n_states > MAX_STATES:
            raise SpecError(f"mapspace too irregular to index ({n_states} order states); add permutation constraints")
        self.radix = tuple(radix)
        self.stride = tuple(int(math.prod(radix[:j])) for j in range(P))
        states = np.arange(n_states)
        kvec = np.stack([(states // self.stride[j]) % radix[j] for j in range(P)], axis=1) if P else \
            np.zeros((1, 0), np.int64)
        self._kvec = kvec

        caps_arr = np.array(self.caps, np.int64).reshape(P)

        def table(dtype, mod=None):
            """C[d][state]: completions of dims d.. from `state`; filled only where every count
            k_j <= d (the states reachable after d dims), which keeps the work small. With `mod`
            (int64), everything is computed modulo that prime."""
            C = [None] * (D + 1)
            C[D] = np.ones(n_states, dtype)
            for d in range(D - 1, -1, -1):
                sub = np.nonzero((kvec <= np.minimum(d, caps_arr)[None, :]).all(axis=1))[0] if P else states
                ksub = kvec[sub]
                acc = np.zeros(len(sub), np.int64 if mod else dtype)
                ins_of, ok_of = {0: np.ones(len(sub), np.int64)}, {0: np.ones(len(sub), bool)}
                for sig, n in zip(self.sig_opts[d], self.sig_n[d]):
                    sig = int(sig)
                    for sub_sig in range(1, sig + 1):  # subset products, built up bit by bit
                        if sub_sig & ~sig or sub_sig in ins_of:
                            continue
                        j = sub_sig.bit_length() - 1
                        rest = sub_sig & ~(1 << j)
                        if rest not in ins_of:
                            continue
                        ins_of[sub_sig] = ins_of[rest] * (ksub[:, j] + 1)
                        ok_of[sub_sig] = ok_of[rest] & (ksub[:, j] < caps_arr[j])
                    if sig not in ins_of:  # build the chain for sig explicitly
                        cur = 0
                        for j in range(P):
                            if sig >> j & 1:
                                nxt_sig = cur | (1 << j)
                                if nxt_sig not in ins_of:
                                    ins_of[nxt_sig] = ins_of[cur] * (ksub[:, j] + 1)
                                    ok_of[nxt_sig] = ok_of[cur] & (ksub[:, j] < caps_arr[j])
                                cur = nxt_sig
                    ins, ok = ins_of[sig], ok_of[sig]
                    shift = int(sum(((sig >> j) & 1) * st for j, st in enumerate(self.stride)))
                    nxt = C[d + 1][np.minimum(sub + shift, n_states - 1)]
                    if mod:
                        term = (ins % mod) * nxt % mod * (int(n) % mod) % mod
                        acc = (acc + np.where(ok, term, 0)) % mod
                    else:
                        acc = acc + np.where(ok, ins.astype(dtype) * nxt * dtype.type(n), 0)
                Cd = np.zeros(n_states, dtype)
                Cd[sub] = acc
                C[d] = Cd
            return C

        with np.errstate(over="ignore", invalid="ignore"):
            Cf = table(np.dtype(np.float64))
        self.n_orders = None
        if Cf[0][0] * self.nb < 2.0 ** 62:
            with np.errstate(over="ignore"):
                Ci = table(np.dtype(np.int64))
            self.C = Ci
            self.n_orders = int(Ci[0][0])
            self.flat = True
        else:  # exact by the Chinese remainder theorem over primes below 2**31
            primes = [2147483647, 2147483629, 2147483587, 2147483579, 2147483563, 2147483549, 2147483543,
                      2147483497, 2147483489, 2147483477, 2147483423, 2147483399]
            need = int(math.log2(max(Cf[0][0], 2.0))) + 4
            use = primes[:max(2, -(-need // 30))]
            if len(use) > len(primes) or not math.isfinite(Cf[0][0]):
                raise SpecError("mapspace too large to count exactly (more than 2**300 mappings)")
            total, modulus = 0, 1
            for q in use:
                r = int(table(np.dtype(np.int64), q)[0][0])
                # combine total (mod modulus) with r (mod q)
                t = ((r - total) * pow(modulus, -1, q)) % q
                total, modulus = total + modulus * t, modulus * q
            self.C = None
            self.n_orders = total
            self.flat = False
        self.size = self.n_orders * self.nb
        self.if_size = math.prod(int(t.shape[0]) for t in self.tables)
        self.static = _Static(L, D, T, S, self.sp_levels, self.pl, self.caps, self.nb, self.free_keep, self.flat)
        self._device_state()

    def _device_state(self):
        self.arrays = self._device_arrays()
        self._decode_jit = jax.jit(self._decode_flat)
        self._genome_jit = jax.jit(self._decode_genome)

    def __getstate__(self):
        """Picklable (for worker processes): the host state; device arrays are rebuilt on load."""
        return {k: v for k, v in self.__dict__.items() if k not in ("arrays", "_decode_jit", "_genome_jit")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._device_state()

    # ------------------------------------------------------------------ description
    def describe(self):
        """Sizes of the sub-spaces, with Timeloop's unpruned Uber counts for comparison."""
        lo, hi = self.box_unpruned
        if_tl = 1
        for d in range(self.D):
            if_tl *= int(ordered_factorizations(self.bounds[d], lo[d], hi[d]).shape[0])
        c = self.constraints
        perm_tl = 1
        for lv in range(1, self.L):
            sc = c.temporal[lv]
            perm_tl *= math.factorial(self.D - len(set(sc.prefix or []) | set(sc.suffix or [])))
        spatial_tl = 1
        for lv in self.sp_levels:
            sc = c.spatial[lv]
            fx, fy = self.fanout[lv]
            if sc.prefix is not None or (fx > 1 and fy > 1):
                perm_tl *= math.factorial(self.D - len(set(sc.prefix or []) | set(sc.suffix or [])))
            spatial_tl *= 1 if sc.split is not None else self.D + 1
        return {
            "size": self.size,
            "index_factorizations": self.if_size,
            "loop_orders_sum_over_IF": self.n_orders,
            "loop_orders_mean_per_IF": self.n_orders / self.if_size,
            "spatial_splits": 1,
            "bypass": self.nb,
            "order_levels": [self.spec.arch.names[lv] for lv in self.pl],
            "free_bypass": [f"{self.spec.arch.names[lv]}:{self.spec.workload.dataspaces[t].name}"
                            for lv, t in self.free_keep],
            "factorizations_per_dim": {self.spec.workload.dims[d]: int(self.tables[d].shape[0]) for d in range(self.D)},
            "prune_fanout": self.prune_fanout,
            "flat_index": self.flat,
            "timeloop_unpruned": {"index_factorizations": if_tl, "permutations": perm_tl,
                                  "spatial_splits": spatial_tl, "bypass": self.nb,
                                  "size": if_tl * perm_tl * spatial_tl * self.nb},
        }

    def size_text(self):
        d = self.describe()
        tl = d["timeloop_unpruned"]
        lines = [
            f"mapspace size: {d['size']:,}",
            f"  = sum over IF of loop orders x spatial x bypass = {d['loop_orders_sum_over_IF']:,} x 1 x {d['bypass']:,}",
            f"  IF (index factorizations): {d['index_factorizations']:,}  ("
            + " x ".join(f"{k}:{v}" for k, v in d["factorizations_per_dim"].items()) + ")",
            f"  perm: {d['loop_orders_mean_per_IF']:.4g} loop orders per IF on average "
            f"(non-unit free loops at {', '.join(d['order_levels']) or 'no level'})",
            "  spatial: 1 (X/Y split chosen on device: cost-invariant)",
            f"  bypass: {d['bypass']:,} (free: {', '.join(d['free_bypass']) or 'none'})",
            f"Timeloop's unpruned Uber space: IF {tl['index_factorizations']:,} x perm {tl['permutations']:,} x "
            f"spatial {tl['spatial_splits']:,} x bypass {tl['bypass']:,} = {tl['size']:,}",
        ]
        if self.prune_fanout:
            lines.append("  (spatial factors larger than any usable mesh axis are pruned from IF)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ device tables
    def _device_arrays(self):
        """Tables the decode gathers from (the signature tables are static: see _decode_flat)."""
        num = np.float64 if self._exact_float else np.int64  # see _decode_flat
        a = {"tables": [jnp.asarray(t, jnp.int32) for t in self.tables],  # factors: bounds are below 2**31
             "keep_base": jnp.asarray(self.keep_base),
             "x_masks": [jnp.asarray(m) for m in self.x_masks],
             "log_fx": jnp.asarray(np.log([self.fanout[lv][0] for lv in self.sp_levels], dtype=np.float64)),
             "log_fy": jnp.asarray(np.log([self.fanout[lv][1] for lv in self.sp_levels], dtype=np.float64))}
        if self.flat:
            a["C"] = [jnp.asarray(c.astype(num)) for c in self.C]
        return a

    # ------------------------------------------------------------------ decode
    def decode(self, idx):
        """Mappings at flat indices `idx` ([B] ints < size < 2**63) as a MappingBatch of jax arrays."""
        if not self.flat:
            raise ValueError("this mapspace has >= 2**63 mappings: no flat index; use genomes")
        idx = jnp.asarray(idx, jnp.int64)
        n = idx.shape[0]
        pad = _bucket(n) - n  # few distinct shapes: few compilations
        out = self._decode_jit(self.arrays, jnp.concatenate([idx, jnp.zeros(pad, jnp.int64)]) if pad else idx)
        return MappingBatch(*(x[:n] for x in out)) if pad else out

    def decode_genome(self, genome):
        """Mappings from genomes (factors [B, D, S], priorities [B, L, D], bypass bits [B, nfree])."""
        n = genome[0].shape[0]
        pad = _bucket(n) - n
        if pad:
            genome = tuple(jnp.concatenate([jnp.asarray(g), jnp.repeat(jnp.asarray(g)[-1:], pad, 0)]) for g in genome)
            return MappingBatch(*(x[:n] for x in self._genome_jit(self.arrays, genome)))
        return self._genome_jit(self.arrays, genome)

    @property
    def _exact_float(self):
        """Index arithmetic in float64 (exact: every index and count is below 2**53)? AVX2 has
        no int64 multiply, division or int64 <-> float conversion: those run as scalar code."""
        return self.size < 2**53

    def _divmod(self, a, b):
        """Quotient and remainder of non-negative integer arrays: floats (exact below 2**53: no
        quotient is within a / 2**53 of an integer without being one) or int64."""
        if a.dtype == jnp.float64:
            q = jnp.floor(a / b)
            return q, a - q * b
        return a // b, a % b

    def _decode_flat(self, a, idx):
        """Traceable: flat indices -> MappingBatch (factors int32). `idx` [B] int64, or float64
        holding integers when the mapspace has fewer than 2**53 points (then all arithmetic is in
        float64; gather indices are int32). (*) Pieces are materialized before they are stacked:
        XLA's CPU backend emits a stack with a branch per element and recomputes each piece's
        producers inside it."""
        D, P = self.D, len(self.pl)
        B = idx.shape[0]
        num = jnp.float64 if self._exact_float else jnp.int64
        gi = lambda x: x.astype(jnp.int32)  # noqa: E731  a gather index
        idx = idx.astype(num)
        if num == jnp.float64:  # bypass is the fastest digit
            r, bcode = self._divmod(idx, jnp.asarray(self.nb, num))
        else:
            r, bcode = idx >> len(self.free_keep), idx & (self.nb - 1)
        # Batch vectors ([B]) only, with the signature tables as static constants: XLA vectorizes
        # along the minor axis, and would run [B, options] arrays (3 or 4 wide) and their
        # reductions at a fraction of the rate.
        s = jnp.zeros(B, jnp.int32)  # offset of the inserted-loop counts so far in the next count table
        k = [jnp.zeros(B, num) for _ in range(P)]  # free non-unit dims inserted so far per order level
        facs, inspos = [], []

        def pick(j, vals):  # vals[j] per batch entry (j in [0, len(vals)))
            out = vals[0]
            for o in range(1, len(vals)):
                out = jnp.where(j == o, vals[o], out)
            return out

        for d in range(D):
            Cn = a["C"][d + 1]
            opts = [[(int(g) >> jj) & 1 for jj in range(P)] for g in self.sig_opts[d]]
            shift = [sum(b * self.stride[jj] for jj, b in enumerate(o)) for o in opts]
            off = [int(x) for x in self.sig_off[d]]

            def inserts(o):  # orders of the option's inserted loops among those already there
                out = jnp.ones(B, num)
                for jj in range(P):
                    if opts[o][jj]:
                        out = out * (k[jj] + 1)
                return out

            if len(opts) == 1:
                j = jnp.zeros(B, jnp.int32)
                nxt, ins_n = Cn[s + shift[0]], inserts(0)
            else:
                cn = [Cn[jnp.minimum(s + shift[o], Cn.shape[0] - 1)] for o in range(len(opts))]
                ins_all = [inserts(o) for o in range(len(opts))]
                cum = [int(self.sig_n[d][0]) * ins_all[0] * cn[0]]
                for o in range(1, len(opts)):
                    cum.append(cum[-1] + int(self.sig_n[d][o]) * ins_all[o] * cn[o])
                cum = lax.optimization_barrier(cum)
                j = sum((c <= r).astype(jnp.int32) for c in cum)
                r = r - pick(j, [jnp.zeros(B, num)] + cum[:-1])
                nxt, ins_n = pick(j, cn), pick(j, ins_all)
            # each step materialized: XLA would recompute the chain in every consumer (and per
            # gathered element)
            j, r, nxt, ins_n = lax.optimization_barrier((j, r, nxt, ins_n))
            q, rn = self._divmod(r, nxt)
            i, ins = self._divmod(q, ins_n)
            row, rn, ins = lax.optimization_barrier((pick(j, off) + gi(i), rn, ins))
            facs.append(a["tables"][d][row])
            pos = []
            for jj in range(P):
                on = pick(j, [o[jj] for o in opts]) == 1
                qq, rr = self._divmod(ins, k[jj] + 1)
                pos.append(jnp.where(on, gi(rr), -1))
                ins = jnp.where(on, qq, ins)
                k[jj] = k[jj] + on
            pos, k, s = lax.optimization_barrier((pos, k, s + pick(j, shift)))
            inspos.append(pos)
            r = rn
        F = jnp.stack(facs, axis=1)  # [B, D, S]
        # insertion codes -> final rank among the free non-unit dims of each order level
        ranks = []
        for jj, lv in enumerate(self.pl):
            cols, placed = [], []  # per free dim: rank so far, inserted?
            for d in self.free_dims[lv]:
                p = inspos[d][jj]
                on = p >= 0
                cols = [jnp.where(on & pl & (c >= p), c + 1, c) for c, pl in zip(cols, placed)]
                cols.append(jnp.where(on, p, 0))
                placed.append(on)
            ranks.append(lax.optimization_barrier(cols))
        bits = (gi(bcode)[:, None] >> jnp.arange(len(self.free_keep), dtype=jnp.int32)[None, :]) & 1
        return self._assemble(a, F, ranks, bits.astype(bool))

    def _decode_genome(self, a, genome):
        F, prio, bits = genome
        ranks = [[prio[:, lv, d].astype(jnp.int32) for d in self.free_dims[lv]] for lv in self.pl]
        return self._assemble(a, F, ranks, bits)

    def _assemble(self, a, F, ranks, bits):
        """Factors [B, D, S], per order level rank keys ([B] each) of its free dims (only the order of
        the non-unit ones counts), bypass bits [B, nfree] -> MappingBatch with canonical loop orders
        and a fitting X/Y split."""
        L, D = self.L, self.D
        B = F.shape[0]
        temporal = jnp.transpose(F[:, :, :L], (0, 2, 1))  # [B, L, D]
        # X and Y factors [B, L, D]: each spatial level's factors masked in at its level (a stack
        # of per-level pieces would be a concatenation, emitted with a branch per element)
        sx = sy = jnp.ones((B, L, D), F.dtype)
        at = lambda lv: (np.arange(L) == lv)[None, :, None]  # noqa: E731
        for i, lv in enumerate(self.sp_levels):
            f = F[:, :, L + i]  # [B, D]
            masks = self.x_masks[i]
            if masks.shape[0] == 1:
                xm = jnp.asarray(masks[0])[None, :]
            else:
                lf = jnp.log(f.astype(jnp.float64))
                lx = lf @ a["x_masks"][i].T.astype(jnp.float64)
                ly = lf.sum(axis=1, keepdims=True) - lx
                ok = (lx <= a["log_fx"][i] + 1e-9) & (ly <= a["log_fy"][i] + 1e-9)
                xm = a["x_masks"][i][jnp.argmax(ok, axis=1)]
            sx = jnp.where(at(lv), jnp.where(xm, f, 1)[:, None, :], sx)
            sy = jnp.where(at(lv), jnp.where(xm, 1, f)[:, None, :], sy)
        # canonical loop order: fixed prefix, free dims (non-unit by rank, then unit ones), fixed suffix;
        # a level that carries no order gets one static order
        rows = []
        rank_of = dict(zip(self.pl, ranks))
        for lv in range(L):
            row = self.static_perm[lv]
            if lv not in rank_of:
                rows.append(jnp.broadcast_to(jnp.asarray(row), (B, D)))
                continue
            fd = self.free_dims[lv]
            f = len(fd)
            key = [jnp.where(F[:, d, lv] > 1, rk, D + e) for e, (d, rk) in enumerate(zip(fd, rank_of[lv]))]
            pos = [sum((key[e2] < key[e]).astype(jnp.int32) for e2 in range(f)) for e in range(f)]  # of each free dim
            seg = [sum(jnp.where(pos[e] == p, jnp.int32(d), 0) for e, d in enumerate(fd)) for p in range(f)]
            seg = jnp.stack(lax.optimization_barrier(seg), axis=1)  # [B, f] the free dims in loop order
            st = self.free_start[lv]
            rows.append(jnp.concatenate([jnp.broadcast_to(jnp.asarray(row[:st]), (B, st)), seg,
                                         jnp.broadcast_to(jnp.asarray(row[st + f:]), (B, D - st - f))], axis=1))
        perm = jnp.stack(rows, axis=1)
        keep = jnp.broadcast_to(a["keep_base"], (B, L, self.T))
        if self.free_keep:
            onehot = np.zeros((len(self.free_keep), L, self.T), bool)
            for i, (lv, t) in enumerate(self.free_keep):
                onehot[i, lv, t] = True
            keep = keep | jnp.any(bits[:, :, None, None] & jnp.asarray(onehot)[None], axis=1)
        return MappingBatch(temporal, sx, sy, perm, keep)

    # ------------------------------------------------------------------ genomes (for search)
    def random_genome(self, key, B):
        """B random points: uniform IF (per-dim uniform tuples), uniform orders and bypass bits."""
        ks = jax.random.split(key, self.D + 2)
        F = jnp.stack([self.arrays["tables"][d][jax.random.randint(ks[d], (B,), 0, self.tables[d].shape[0])]
                       for d in range(self.D)], axis=1)
        prio = jnp.argsort(jax.random.uniform(ks[self.D], (B, self.L, self.D)), axis=2)
        bits = jax.random.bernoulli(ks[self.D + 1], 0.5, (B, len(self.free_keep)))
        return F, prio, bits

    def random_indices(self, key, B):
        """B uniform flat indices in [0, size)."""
        if not self.flat:
            raise ValueError("no flat index for spaces of 2**63 mappings or more")
        k1, k2 = jax.random.split(key)
        hi = jax.random.randint(k1, (B,), 0, 2**31, dtype=jnp.int64)
        lo = jax.random.randint(k2, (B,), 0, 2**31, dtype=jnp.int64)
        return ((hi << 31) | lo) % self.size

    # ------------------------------------------------------------------ encode (host)
    def slot_factors(self, m):
        """A Mapping's factors as [D, S] (spatial = X * Y), or raise ValueError."""
        F = np.ones((self.D, self.S), np.int64)
        F[:, :self.L] = np.asarray(m.temporal).T
        sp = np.asarray(m.spatial_x) * np.asarray(m.spatial_y)
        for lv in range(self.L):
            if lv not in self.sp_levels and (sp[lv] > 1).any():
                raise ValueError(f"spatial factors below {self.spec.arch.names[lv]}, which has no fanout")
        for i, lv in enumerate(self.sp_levels):
            F[:, self.L + i] = sp[lv]
        return F

    def encode(self, m):
        """Flat index of a Mapping (any loop order equivalent to the canonical one); ValueError
        if the mapping is not in this mapspace."""
        if not self.flat:
            raise ValueError("no flat index for spaces of 2**63 mappings or more")
        D, P = self.D, len(self.pl)
        F = self.slot_factors(m)
        names = self.spec.workload.dims
        sig_j, within = [], []
        for d in range(D):
            tab = self.tables[d]
            hit = np.nonzero((tab == F[d][None, :]).all(axis=1))[0]
            if len(hit) == 0:
                raise ValueError(f"factors of {names[d]} {F[d].tolist()} are not in the mapspace (constraints or "
                                 "fanout pruning)")
            row = int(hit[0])
            j = int(np.searchsorted(self.sig_off[d], row, side="right") - 1)
            sig_j.append(j)
            within.append(row - int(self.sig_off[d][j]))
        perm = np.asarray(m.perm)
        temporal = np.asarray(m.temporal)
        for lv in range(self.L):  # permutation constraints on the non-unit loops
            sc = self.constraints.temporal[lv]
            if sc.prefix is None:
                continue
            order = [d for d in perm[lv] if temporal[lv, d] > 1]
            pre = [d for d in sc.prefix if temporal[lv, d] > 1]
            suf = [d for d in sc.suffix if temporal[lv, d] > 1]
            if order[:len(pre)] != pre or (suf and order[len(order) - len(suf):] != suf):
                raise ValueError(f"loop order at {self.spec.arch.names[lv]} violates its permutation constraint")
        # insertion codes per order level
        ins_codes = np.full((D, P), -1, np.int64)
        for jj, lv in enumerate(self.pl):
            free = [d for d in perm[lv] if temporal[lv, d] > 1 and d in self.free_dims[lv]]
            seen = []
            for d in sorted(free):
                final = free.index(d)
                ins_codes[d, jj] = sum(1 for e in seen if free.index(e) < final)
                seen.append(d)
        # bypass
        keep = np.asarray(m.keep, bool)
        for lv in range(self.L):
            for t in range(self.T):
                if (lv, t) in self.free_keep:
                    continue
                if keep[lv, t] != self.keep_base[lv, t]:
                    raise ValueError(f"keep of {self.spec.workload.dataspaces[t].name} at "
                                     f"{self.spec.arch.names[lv]} is fixed by the constraints")
        bcode = sum(int(keep[lv, t]) << i for i, (lv, t) in enumerate(self.free_keep))
        # forward walk: offsets, then assemble from the back
        k = [0] * P
        s = 0
        parts = []
        for d in range(D):
            j = sig_j[d]
            opts = self.sig_opts[d]
            w_prev = 0
            for jo in range(j):
                bits = [(int(opts[jo]) >> jj) & 1 for jj in range(P)]
                ins_n = math.prod(k[jj] + 1 for jj in range(P) if bits[jj])
                shift = sum(b * st for b, st in zip(bits, self.stride))
                w_prev += int(self.sig_n[d][jo]) * ins_n * int(self.C[d + 1][s + shift])
            bits = [(int(opts[j]) >> jj) & 1 for jj in range(P)]
            ins_n = math.prod(k[jj] + 1 for jj in range(P) if bits[jj])
            ins, mult = 0, 1
            for jj in range(P):
                if bits[jj]:
                    ins += int(ins_codes[d, jj]) * mult
                    mult *= k[jj] + 1
            shift = sum(b * st for b, st in zip(bits, self.stride))
            nxt = int(self.C[d + 1][s + shift])
            parts.append((w_prev, within[d] * ins_n + ins, nxt))
            k = [k[jj] + bits[jj] for jj in range(P)]
            s += shift
        r = 0
        for w_prev, q, nxt in reversed(parts):
            r = w_prev + q * nxt + r
        return r * self.nb + bcode

    def mapping(self, idx):
        """The Mapping at flat index idx (host)."""
        return self.decode(np.array([idx])).mapping(0)

    def genome_of(self, batch):
        """Genomes reproducing a MappingBatch of canonical mappings (host, numpy)."""
        b = MappingBatch(*(np.asarray(x) for x in batch))
        B = b.size
        F = np.ones((B, self.D, self.S), np.int64)
        F[:, :, :self.L] = np.transpose(b.temporal, (0, 2, 1))
        sp = b.spatial_x * b.spatial_y
        for i, lv in enumerate(self.sp_levels):
            F[:, :, self.L + i] = sp[:, lv]
        prio = np.argsort(b.perm, axis=2)  # position of each dim = its rank
        bits = np.stack([b.keep[:, lv, t] for lv, t in self.free_keep], axis=1) if self.free_keep else \
            np.zeros((B, 0), bool)
        return jnp.asarray(F), jnp.asarray(prio), jnp.asarray(bits)
