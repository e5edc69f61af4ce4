"""A slow, literal plain-Python port of Sparseloop's mapping-dependent analyses, one mapping at a
time: the test oracle for the vectorized versions in jaxloop/model/sparse.py.

* `format_models(spec, sp, mapping)`: Timeloop's DefineCompressionFormatModels with
  ApplyRanksOuterToInner / ApplyRanksInnerToOuter (src/sparse-analysis/representation-analyzer.cpp):
  per (level, dataspace) with a representation format, the fiber shape of every rank and the
  sub-tile sizes (element tile of each rank), following the C++ control flow loop by loop.
* `saf_probability(spec, sp, mapping, level, target, conds)`: ComputeIneffectualReadImpact
  (storage-gs-analyzer.cpp): the target loop, the leader tile and the probability that a target
  access is optimized away.

The only deliberate departure is the one documented in sparse.py: a rank that a flattening rule
leaves empty becomes a dummy in its own position (Timeloop appends it at the outer end).
Loops are the kernel's: per level its spatial loops (X inside Y, each in dimension order; only
with a fan-out) inside its temporal loops (permutation order); perfect factorizations only.
"""

from math import ceil, prod

import numpy as np


def loop_nest(spec, mapping):
    """[(level, dim, bound, spatial)] innermost first; a level's spatial loops along X inside
    those along Y (each in dimension order)."""
    arch, D = spec.arch, len(spec.workload.dims)
    out = []
    for l in range(len(arch.levels)):
        fx, fy = arch.fanout(l)
        if fx * fy > 1:
            for d in sorted(range(D), key=lambda d: (mapping.spatial_y[l, d] > 1, d)):
                out.append((l, d, int(mapping.spatial_x[l, d] * mapping.spatial_y[l, d]), True))
        for d in mapping.perm[l]:
            out.append((l, int(d), int(mapping.temporal[l, d]), False))
    return out


def _footprint(ranks, ext):
    return prod(1 + sum(c * (ext[d] - 1) for d, c in r) for r in ranks)


def _molds(nest, D):
    """Cumulative extents at every loop (the max-tile mold, that loop included)."""
    ext, out = [1] * D, []
    for _, d, b, _ in nest:
        ext = list(ext)
        ext[d] *= b
        out.append(ext)
    return out


def _ranks(static, t):
    return static.ranks[t]


def _apply_outer_to_inner(sub_loops, subtiles, rank_specs, has_md, inner):
    """sub_loops: [(dim, bound)] innermost first; returns (subnest per rank, subtile per rank)."""
    R = len(rank_specs) if has_md else 1
    subnest, subtile = [None] * R, [None] * R
    loop_id, r = len(sub_loops) - 1, R
    rule = [(rs[1] if has_md else None) for rs in rank_specs] if has_md else [None]
    while r > inner and loop_id >= 0:
        while loop_id >= 0 and sub_loops[loop_id][1] <= 1:
            loop_id -= 1
        if loop_id < 0:
            break
        r -= 1
        dim, b = sub_loops[loop_id]
        in_flat = False
        if has_md and rule[r] is not None:
            if dim in rule[r]:
                in_flat = True
            else:
                subnest[r], subtile[r] = [], None  # dummy; the same loop is tried on the next rank
                continue
        if not has_md:
            in_flat = True
        nest_r = [(dim, b)]
        corr = subtiles[loop_id]
        loop_id -= 1
        if loop_id >= 0 and (not has_md or in_flat):
            while True:
                d2, b2 = sub_loops[loop_id]
                trivial = b2 <= 1
                if not (not has_md or (rule[r] is not None and d2 in rule[r]) or trivial):
                    break
                if not trivial:
                    nest_r.append((d2, b2))
                loop_id -= 1
                if loop_id < 0:
                    break
        subnest[r], subtile[r] = nest_r, corr
    fail = any(sub_loops[i][1] > 1 for i in range(loop_id + 1))
    for i in range(R):
        if subnest[i] is None:
            subnest[i] = []
    return subnest, subtile, fail


def _apply_inner_to_outer(sub_loops, subtiles, rank_specs, has_md, inner):
    R = len(rank_specs) if has_md else 1
    subnest, subtile = [None] * R, [None] * R
    rule = [rs[1] for rs in rank_specs] if has_md else [None]
    loop_id, r, n = 0, inner - 1, len(sub_loops)
    while r < R - 1 and loop_id < n:
        while loop_id < n and sub_loops[loop_id][1] <= 1:
            loop_id += 1
        if loop_id >= n:
            break
        r += 1
        dim, b = sub_loops[loop_id]
        in_flat = False
        if has_md and rule[r] is not None:
            if dim in rule[r]:
                in_flat = True
            else:
                subnest[r], subtile[r] = [], 1  # dummy with the scalar sub-tile
                continue
        if not has_md:
            in_flat = True
        nest_r = [(dim, b)]
        corr = subtiles[loop_id]
        loop_id += 1
        if loop_id < n and (not has_md or in_flat):
            while True:
                d2, b2 = sub_loops[loop_id]
                trivial = b2 <= 1
                if not (not has_md or (rule[r] is not None and d2 in rule[r]) or trivial):
                    break
                if not trivial:
                    nest_r.append((d2, b2))
                loop_id += 1
                if loop_id >= n:
                    break
        subnest[r], subtile[r] = nest_r, corr
    fail = any(sub_loops[i][1] > 1 for i in range(loop_id, n))
    for i in range(R):
        if subnest[i] is None:
            subnest[i] = []
    return subnest, subtile, fail


def format_models(spec, sp, static, mapping):
    """{(level, dataspace): (fiber shapes [R], subtile sizes [R+1])} for every kept (level,
    dataspace) with a format, and whether any needed more ranks than declared."""
    wl, L, D = spec.workload, len(spec.arch.levels), len(spec.workload.dims)
    nest = loop_nest(spec, mapping)
    molds = _molds(nest, D)
    keep = np.asarray(mapping.keep, bool)
    out, info, fail = {}, {}, False
    for t in range(len(wl.dataspaces)):
        ranks_t = _ranks(static, t)
        rel = static.relevant(t)
        shape = {l: _footprint(ranks_t, molds[[i for i, x in enumerate(nest) if x[0] == l][-1]]) for l in range(L)}
        for l in range(L):
            if not keep[l, t]:
                continue
            child = max([c for c in range(l) if keep[c, t]], default=None)
            inner_most = child + 1 if child is not None else 0
            f = sp.format(l, t)
            has_md = f is not None
            R = len(f[1]) if has_md else 1
            comp = sp.compressed(l, t)
            pretile = comp and child is not None and shape[child] > 1
            cinfo = info.get((child, t)) if child is not None else None
            inner = cinfo["R"] if pretile else 0
            if pretile and inner > R:
                fail = True
                continue
            idx = [i for i, x in enumerate(nest) if inner_most <= x[0] <= l and rel[x[1]]]
            sub_loops = [(nest[i][1], nest[i][2]) for i in idx]
            subtiles = [_footprint(ranks_t, molds[i]) for i in idx]
            if not pretile:
                sizes = [1] * D
                for x in nest:
                    if x[0] < inner_most:
                        sizes[x[1]] *= x[2]
                scaled = []
                for d, b in sub_loops:
                    scaled.append((d, b * sizes[d]))
                    sizes[d] = 1
                sub_loops = scaled
            specs = f[1] if has_md else ()
            order = f[0] if has_md else False
            apply = _apply_inner_to_outer if order else _apply_outer_to_inner
            subnest, subtile, fl = apply(sub_loops, subtiles, specs, has_md, inner)
            fail = fail or fl
            sing0 = subtiles[0] if subtiles else 1
            subtile = [sing0 if s is None else s for s in subtile]
            if pretile:
                subnest[:inner] = cinfo["subnest"][:inner]
                subtile[:inner] = cinfo["subtile"][1:inner + 1]
                sub0 = cinfo["subtile"][0]
            else:
                sub0 = 1
            fibers = []
            for r in range(R):
                ext = [1] * D
                for d, b in subnest[r]:
                    ext[d] *= b
                fibers.append(_footprint(ranks_t, ext))
            info[(l, t)] = {"R": R, "subnest": subnest, "subtile": [sub0] + subtile}
            if has_md:
                out[(l, t)] = (fibers, [sub0] + subtile)
    return out, fail


def saf_leader(spec, static, mapping, level, target, cond, block):
    """(leader tile size of `cond` [points], target level) for one option of a SAF at `level`.
    Literal port of the target-loop and leader-tile search of ComputeIneffectualReadImpact."""
    L, D = len(spec.arch.levels), len(spec.workload.dims)
    keep = np.asarray(mapping.keep, bool)
    nest = loop_nest(spec, mapping)
    molds = _molds(nest, D)
    by_level = [[i for i, x in enumerate(nest) if x[0] == l] for l in range(L)]
    tl = next((l for l in range(level, L) if keep[l, target]), None)
    if tl is None:
        return None, None
    child = max([c for c in range(tl) if keep[c, target]], default=-1)
    relT = static.relevant(target)
    found, scalar, k = False, False, None
    for l in range(child + 1, tl + 1):
        for j, i in enumerate(by_level[l]):
            _, d, b, sp_ = nest[i]
            if child != -1:
                found = b > 1 and relT[d]
            else:
                nxt = by_level[l][j + 1] if j + 1 < len(by_level[l]) else None
                if nxt is None or not nest[nxt][3]:
                    found = True
                    scalar = not sp_
                elif relT[d] and b > 1:
                    found = True
            if found:
                k = i
                break
        if found:
            break
    if not found:
        k = by_level[tl][-1]
    mold = [1] * D if scalar else list(molds[k])
    is_sp = nest[k][3]
    cond_ext = list(mold)
    relevant = [k]
    located = not is_sp
    for i in range(k + 1, by_level[tl][-1] + 1):
        _, d, b, sp_ = nest[i]
        if b <= 1:
            continue
        if sp_ or (not located and child != -1 and not relT[d]):
            cond_ext[d] *= b
            relevant.append(i)
        if is_sp and not sp_ and (child == -1 or relT[d]):
            located = True
    relC = static.relevant(cond)
    co = [relT[d] and relC[d] for d in range(D)]
    cf, agg, is_co = {}, 1.0, False
    if not scalar:
        for i in relevant:
            d, b = nest[i][1], nest[i][2]
            if is_sp and is_co and relC[d]:
                return "ineffective", tl
            if co[d]:
                cf[d] = cf.get(d, 1.0) * b
                agg *= b
                is_co = True
    t_ext = list(mold)
    gran = _footprint(static.ranks[target], t_ext)
    scaling = ceil(block[tl] / (gran / agg))
    for d in sorted(cf):
        eff = cf[d] / scaling
        t_ext[d] = ceil(t_ext[d] / eff)
        cond_ext[d] = ceil(cond_ext[d] / eff)
        scaling = scaling / cf[d]
    if scaling > 1:
        cond_ext[nest[k][1]] *= scaling
    return _footprint(static.ranks[cond], cond_ext), tl


# ----------------------------------------------------------------------------- spatial skipping

def spatial_instances(spec, sp, static, mapping, p_empty, max_num_elements):
    """Timeloop's InitializeSpatialInstances, CalculateSpatialOptimizationImpact and
    SummarizeAndPropagateSpatialCapacityReduction (storage-gs-analyzer.cpp) for one mapping, loop
    by loop with Python floats. `p_empty(t, n)` and `max_num_elements(t, fiber, element, f)` are
    the density queries. Returns per dataspace the average ratio, max X and max Y of every
    architecture level a (0 = compute, a = l + 1 = storage level l), the MAC max and average
    (truncated) instances and whether the fan-out check fails. Spatial loops of a level: X then
    Y, each in dimension order, inside the level's temporal loops (as the kernel)."""
    L, D, T = len(spec.arch.levels), len(spec.workload.dims), len(spec.workload.dataspaces)
    keep = np.asarray(mapping.keep, bool) & np.asarray(static.keepable, bool)
    sub = []  # complete_subnests_: per level [(kind 'X'|'Y'|'T', dim, bound)], innermost first
    for l in range(L):
        sub.append([("X", d, int(mapping.spatial_x[l, d])) for d in range(D)]
                   + [("Y", d, int(mapping.spatial_y[l, d])) for d in range(D)]
                   + [("T", int(d), int(mapping.temporal[l, d])) for d in mapping.perm[l]])
    molds, ext = [], [1] * D  # maxtile_molds_high_ as extents
    for l in range(L):
        molds.append([])
        for _, d, b in sub[l]:
            ext = list(ext)
            ext[d] *= b
            molds[l].append(ext)

    def mold_inside(s, i):
        if i == 0:
            return [1] * D if s == 0 else list(molds[s - 1][-1])
        return list(molds[s][i - 1])

    def fp(t, e):
        return _footprint(static.ranks[t], e)

    def has_md(l, t):
        return l < L and keep[l, t] and sp.format(l, t) is not None

    def first_keeper(t, s, cap):
        lvl = s
        while lvl < cap and not keep[lvl, t]:
            lvl += 1
        return lvl

    rel = [set(np.nonzero(static.relevant(t))[0]) for t in range(T)]
    sxp = [int(np.prod(mapping.spatial_x[l])) for l in range(L)]
    syp = [int(np.prod(mapping.spatial_y[l])) for l in range(L)]
    dense_x = [int(np.prod(sxp[a:])) for a in range(L + 1)]
    dense_y = [int(np.prod(syp[a:])) for a in range(L + 1)]
    saf = {(s, tgt): c for s, tgt, c in sp.spatial_safs}
    smask = {(s, tgt) for s, tgt, _ in sp.spatial_safs}
    ratio = [[1.0] * (L + 1) for _ in range(T)]
    X = [list(dense_x) for _ in range(T)]
    Y = [list(dense_y) for _ in range(T)]
    store = [[[dense_x[l + 1], dense_y[l + 1]] for l in range(L)] for _ in range(T)]  # storage max_x/y

    def shrink(u, t, a, kind, d, f, m):
        """Dataspace t's X or Y at arch level a *= (most non-empty elements of u's fiber) / f."""
        fib = list(m)
        fib[d] *= f
        r = max_num_elements(u, fp(u, fib), fp(u, m), f) / f
        if kind == "X":
            X[t][a] = int(X[t][a] * r)
        else:
            Y[t][a] = int(Y[t][a] * r)
    for t in range(T):  # InitializeSpatialInstances
        mask = [False] * (L + 1)
        for s in range(L):
            lvl = first_keeper(t, s, L - 1)
            if not has_md(lvl, t):
                continue
            first, eff = True, 1.0
            for i, (kind, d, f) in enumerate(sub[s]):
                if kind == "T" or f <= 1 or d not in rel[t]:
                    continue
                m = mold_inside(s, i)
                if first:
                    eff, first = 1.0 - p_empty(t, fp(t, m)), False
                shrink(t, t, s, kind, d, f, m)
            ratio[t][s] = eff
            mask[s] = eff != 1.0
        for a in range(L, 0, -1):
            xr, yr = X[t][a] / store[t][a - 1][0], Y[t][a] / store[t][a - 1][1]
            if xr != 1.0 or yr != 1.0:
                store[t][a - 1] = [X[t][a], Y[t][a]]
                cross = False
                for b in range(a - 1, -1, -1):
                    X[t][b], Y[t][b] = int(X[t][b] * xr), int(Y[t][b] * yr)
                    cross = cross or mask[b]
                    if not cross:
                        ratio[t][b] *= ratio[t][a]
    for (s, t), c in saf.items():  # CalculateSpatialOptimizationImpact (one leader)
        lc = first_keeper(c, s, L)
        eff = 1.0
        if lc < L and has_md(lc, c):
            child = max([l for l in range(s) if keep[l, t]], default=-1)
            tl = first_keeper(t, s, L - 1)
            first = True
            for i, (kind, d, f) in enumerate(sub[s]):
                if kind == "T" or f <= 1 or d not in rel[c]:
                    continue
                m = mold_inside(s, i)
                if child != -1 and d in rel[t] and d in rel[c]:
                    found = False
                    for lv in range(s, tl + 1):
                        for k2, d2, b2 in sub[lv]:
                            if found or k2 != "T" or b2 <= 1:
                                continue
                            if d2 in rel[t]:
                                found = True
                            else:
                                m[d2] *= b2
                if first:
                    eff, first = 1.0 - p_empty(c, fp(c, m)), False
                shrink(c, t, s, kind, d, f, m)
        ratio[t][s] = eff
    mac_x = mac_y = mac_avg = 0
    mac_rep = dense_x[0] * dense_y[0]
    for t in range(T):  # SummarizeAndPropagateSpatialCapacityReduction
        orig = [list(v) for v in store[t]]
        for a in range(L, -1, -1):
            ra, xr, yr = ratio[t][a], 1.0, 1.0
            if a:
                xr, yr = X[t][a] / orig[a - 1][0], Y[t][a] / orig[a - 1][1]
            else:
                mac_x, mac_y = max(mac_x, X[t][0]), max(mac_y, Y[t][0])
                mac_avg = max(mac_avg, mac_rep * ra)
            if xr != 1 or yr != 1:
                cross = False
                for b in range(a - 1, -1, -1):
                    cross = cross or (b, t) in smask
                    if not cross:
                        ratio[t][b] *= ra
                    X[t][b], Y[t][b] = int(X[t][b] * xr), int(Y[t][b] * yr)
    fail = False
    for t in range(T):
        for a in range(L):
            hx, hy = spec.arch.fanout(a)
            fail = fail or X[t][a] // X[t][a + 1] > hx or Y[t][a] // Y[t][a + 1] > hy
    return {"ratio": ratio, "X": X, "Y": Y, "mac_max": mac_x * mac_y, "mac_avg": int(mac_avg), "fanout_fail": fail}
