"""A slow, literal port of Timeloop's legacy nest analysis: the test oracle for the JAX kernel.

`simulate(workload, arch, mapping)` walks one mapping's loop nest the way Timeloop's
`NestAnalysis::ComputeDeltas` does (src/loop-analysis/nest-analysis.cpp, master 4cf6d4c) and
post-processes the result like `tiling::CollapseTiles` (src/loop-analysis/tiling.cpp):

* working sets are axis-aligned boxes projected from the iteration-space box of a sub-nest
  (`OperationSpace`), deltas are set differences of unions of boxes (`MultiAAHR`);
* a working set is only subtracted from its predecessor while it keeps moving with the same
  translation (`OperationSpace::SaveAndSubtractIfSameStride`);
* temporal extrapolation is on: a loop of n >= 2 iterations runs iterations #0 and #1 and
  weighs #1 by n-1 (perfect factorisations only, so #last is never run);
* spatial extrapolation is on, "first element only": only spatial instance 0 of each spatial
  block is simulated, the others get instance 0's delta translated by the step of the loop;
* multicast groups are children with identical deltas; link transfers (on by default) move a
  delta equal to a mesh neighbour's previous delta over a link when that saves parent accesses.

Everything is plain Python. It is meant to be read next to the C++; the C++ names are kept.
Only perfect factorisations without skews, flattening or M:N networks are handled.
"""

from collections import namedtuple
from math import floor, prod

# ----------------------------------------------------------------------------- point sets
# A box is a tuple of (lo, hi) pairs, hi exclusive (Timeloop AxisAlignedHyperRectangle).
# A point set is a tuple of disjoint non-empty boxes (Timeloop MultiAAHR).


def _box_size(b):
    return prod(hi - lo for lo, hi in b)


def _size(s):
    return sum(_box_size(b) for b in s)


def _box_minus(a, b):
    """AxisAlignedHyperRectangle::MultiSubtract: a - b as slices, rank by rank, left then right."""
    if any(ahi <= blo or bhi <= alo for (alo, ahi), (blo, bhi) in zip(a, b)):
        return [a]
    out, mid = [], list(a)
    for r, (blo, bhi) in enumerate(b):
        lo, hi = mid[r]
        if lo < blo:
            out.append(tuple(mid[:r]) + ((lo, blo),) + tuple(mid[r + 1:]))
            lo = blo
        if bhi < hi:
            out.append(tuple(mid[:r]) + ((bhi, hi),) + tuple(mid[r + 1:]))
            hi = bhi
        mid[r] = (lo, hi)
    return out


def _minus(s, other):
    """MultiAAHR::Subtract."""
    s = list(s)
    for b in other:
        s = [piece for a in s for piece in _box_minus(a, b)]
    return tuple(s)


def _same(a, b):
    """MultiAAHR::operator== (same boxes; boxes in a set are disjoint so a set compare does)."""
    return len(a) == len(b) and set(a) == set(b)


def _cpp_round(x):
    return int(floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _centroid(s):
    return [sum((b[r][0] + b[r][1]) / 2 * _box_size(b) for b in s) / _size(s) for r in range(len(s[0]))]


def _translation(a, b):
    """MultiAAHR::GetTranslation a -> b: the size-weighted centroid shift, rounded (0 if empty)."""
    if not _size(a) or not _size(b):
        return (0,) * len((a or b)[0])
    return tuple(_cpp_round(y - x) for x, y in zip(_centroid(a), _centroid(b)))


def _translate(s, t):
    return tuple(tuple((lo + d, hi + d) for (lo, hi), d in zip(b, t)) for b in s)


# ----------------------------------------------------------------------------- the nest


Loop = namedtuple("Loop", "dim end kind")  # kind: "T" temporal, "X" / "Y" spatial


def build_nest(workload, mapping):
    """Timeloop's mapping parser: inner to outer, per storage level its spatial loops (in
    spatial-permutation order: X loops, then Y loops) then its temporal loops (permutation
    order). Bound-1 loops are dropped; an all-trivial temporal level keeps one placeholder loop
    (on the last dimension) so that it has a storage boundary. Returns (loops, boundaries)."""
    loops, boundaries = [], []
    D = len(workload.dims)

    def level_loops(factors, order, kind):
        return [Loop(int(d), int(factors[d]), kind) for d in order if factors[d] > 1]

    for lv in range(mapping.temporal.shape[0]):
        loops += level_loops(mapping.spatial_x[lv], mapping.spatial_perm[lv], "X")
        loops += level_loops(mapping.spatial_y[lv], mapping.spatial_perm[lv], "Y")
        loops += level_loops(mapping.temporal[lv], mapping.perm[lv], "T") or [Loop(D - 1, 1, "T")]
        boundaries.append(len(loops) - 1)
    return loops, boundaries


class _ElementState:
    """Per-loop, per-spatial-instance state (analysis::ElementState)."""

    def __init__(self, T):
        self.max_size = [0] * T
        self.access_stats = [{} for _ in range(T)]  # (multicast, scatter) -> accesses
        self.link_transfers = [0] * T
        self.last_point_set = [() for _ in range(T)]
        self.last_translation = [None] * T  # None = Timeloop's order-0 ("null") Point
        self.prev_spatial_deltas = {}


class NestAnalysis:
    def __init__(self, workload, arch, mapping, link_transfers=True, old_stride_rule=False):
        self.w, self.link_transfers_enabled, self.old_stride_rule = workload, link_transfers, old_stride_rule
        self.T, D = len(workload.dataspaces), len(workload.dims)
        self.nest, self.boundaries = build_nest(workload, mapping)
        n = len(self.nest)
        spatial = [lp.kind != "T" for lp in self.nest]
        self.is_boundary = [i in self.boundaries for i in range(n)]
        # InitNumSpatialElems: instances above each loop; master = outermost loop of a spatial run.
        self.num_spatial_elems = [prod(lp.end for lp in self.nest[i + 1:] if lp.kind != "T") for i in range(n)]
        self.master = [spatial[i] and (i == n - 1 or not spatial[i + 1]) for i in range(n)]
        # InitStorageBoundaries: loop -> storage level.
        self.storage_level = [sum(b < i for b in self.boundaries) for i in range(n)]
        # InitSpatialFanouts: the logical fan-out of a master loop is the product of its run.
        self.fanout_x, self.fanout_y = [1] * n, [1] * n
        for i in (i for i in range(n) if self.master[i]):
            for j in range(i, -1, -1):
                if not spatial[j]:
                    break
                (self.fanout_x if self.nest[j].kind == "X" else self.fanout_y)[i] *= self.nest[j].end
        self.fanout = [0 if spatial[i] and not self.master[i] else fx * fy
                       for i, (fx, fy) in enumerate(zip(self.fanout_x, self.fanout_y))]
        # InitPerLevelDimScales: vector strides and the high corner of each loop's mold.
        self.strides, self.mold_high, scale = [], [], [1] * D
        for lp in self.nest:
            self.strides.append(list(scale))
            scale[lp.dim] *= lp.end
            self.mold_high.append([s - 1 for s in scale])
        self.physical_fanout = [arch.fanout(lv) for lv in range(len(arch.levels))]
        self.live_state = [{} for _ in range(n)]
        self.transform = [0] * D  # cur_transform_
        self.space_stamp = []
        self.epochs = 1

    # --- working sets ---------------------------------------------------------
    def _project(self, low, high):
        """OperationSpace(low, high inclusive) -> one box per dataspace (ProjectLowHigh)."""
        out = []
        for ds in self.w.dataspaces:
            box = []
            for rank in ds.ranks:
                lo = sum(c * (low[d] if c >= 0 else high[d]) for d, c in rank)
                hi = sum(c * (high[d] if c >= 0 else low[d]) for d, c in rank)
                box.append((lo, hi + 1))
            out.append((tuple(box),))
        return out

    def working_set(self, lv, transform=None):
        """GetCurrentWorkingSet: the mold of loop lv placed at the current transform."""
        t = self.transform if transform is None else transform
        return self._project(t, [a + b for a, b in zip(t, self.mold_high[lv])])

    def translation_vectors(self, lv):
        """GetCurrentTranslationVectors: working-set motion for one step of loop lv."""
        moved = list(self.transform)
        moved[self.nest[lv].dim] += self.strides[lv][self.nest[lv].dim]
        a, b = self.working_set(lv), self.working_set(lv, moved)
        return [_translation(x, y) for x, y in zip(a, b)]

    def save_and_subtract(self, point_set, state):
        """OperationSpace::SaveAndSubtractIfSameStride. The delta is `current - previous` while
        the working set stays put or keeps the translation it last moved by; a new non-zero
        translation discards the residual and the whole current set is fetched again. The
        translation is null (None) only when the previous set was empty."""
        delta = []
        for t, cur in enumerate(point_set):
            prev, last = state.last_point_set[t], state.last_translation[t]
            translation = _translation(prev, cur) if _size(prev) else None
            if self.old_stride_rule:  # older Timeloop: a zero translation is remembered too
                same = last is None or translation == last
                if last is None:
                    state.last_translation[t] = translation
            else:  # master: null or zero translations neither reset nor get remembered
                stationary = translation is None or not any(translation)
                same = stationary or last is None or translation == last
                if not stationary and last is None:
                    state.last_translation[t] = translation
            if same:
                delta.append(_minus(cur, prev))
            else:
                delta.append(cur)
                state.last_translation[t] = None
            state.last_point_set[t] = cur
        return delta

    # --- the recursive walk -----------------------------------------------------
    def compute_deltas(self, lv):
        """ComputeDeltas: run loop lv (and everything inside), return its delta."""
        if self.is_boundary[lv]:
            self.space_stamp.append(0)
        state = self.live_state[lv].setdefault(tuple(self.space_stamp[:-1]), _ElementState(self.T))
        if self.nest[lv].kind == "T":
            self.temporal_working_set(lv, state)
        else:
            self.spatial_working_set(lv)
        point_set = self.working_set(lv)
        if self.is_boundary[lv] or self.master[lv]:
            state.max_size = [max(m, _size(s)) for m, s in zip(state.max_size, point_set)]
        delta = self.save_and_subtract(point_set, state)
        if self.is_boundary[lv]:
            self.space_stamp.pop()
        return delta

    def temporal_working_set(self, lv, state):
        """ComputeTemporalWorkingSet with gExtrapolateUniformTemporal (iterations #0 and #1)."""
        loop = self.nest[lv]
        if lv == 0:
            for t in range(self.T):
                state.access_stats[t][(1, 1)] = state.access_stats[t].get((1, 1), 0) + loop.end * self.epochs
            return
        dim, scale, saved = loop.dim, self.strides[lv][loop.dim], self.transform[loop.dim]
        deltas = [(self.compute_deltas(lv - 1), 1)]
        self.transform[dim] += scale
        if loop.end >= 2:
            saved_epochs, self.epochs = self.epochs, self.epochs * (loop.end - 1)
            deltas.append((self.compute_deltas(lv - 1), loop.end - 1))
            self.epochs = saved_epochs
        self.transform[dim] = saved
        if self.is_boundary[lv - 1]:
            for t in range(self.T):
                total = sum(_size(d[t]) * weight for d, weight in deltas)
                state.access_stats[t][(1, 1)] = state.access_stats[t].get((1, 1), 0) + total * self.epochs

    def spatial_working_set(self, lv):
        """ComputeSpatialWorkingSet: deltas of all children, multicast and link transfers."""
        spatial_deltas = {}
        self.fill_spatial_deltas(lv, spatial_deltas, 0, 0, lv)
        state = self.live_state[lv][tuple(self.space_stamp[:-1])]
        everyone = [set(spatial_deltas) for _ in range(self.T)]
        chosen = self.multicast_accesses(spatial_deltas, everyone)
        if self.link_transfers_enabled:  # every master spatial level is a linked level
            links, unaccounted = self.network_link_transfers(lv, spatial_deltas, state)
            with_links = self.multicast_accesses(spatial_deltas, unaccounted)
            for t in range(self.T):
                if sum(with_links[t].values()) < sum(chosen[t].values()):
                    state.link_transfers[t] += links[t]
                    chosen[t] = with_links[t]
        for t in range(self.T):
            for key, acc in chosen[t].items():
                state.access_stats[t][key] = state.access_stats[t].get(key, 0) + acc

    def fill_spatial_deltas(self, lv, spatial_deltas, base, xstride, xlevel):
        """FillSpatialDeltas with first-element-only spatial extrapolation."""
        loop = self.nest[lv]
        dim, end, scale = loop.dim, loop.end, self.strides[lv][loop.dim]
        base *= end
        if lv == 0:  # children are MACs: each receives one operation point
            for i in range(end):
                point = list(self.transform)
                point[dim] += i
                spatial_deltas[base + i] = self._project(point, point)
            return
        saved, i = self.transform[dim], 0
        if self.nest[lv - 1].kind != "T":
            for i in range(end):
                if i >= 1:  # extrapolate the inner loops from this loop's previous iteration
                    self.fill_spatial_deltas(lv - 1, spatial_deltas, base + i, 1, lv)
                else:
                    self.fill_spatial_deltas(lv - 1, spatial_deltas, base + i, xstride * end, xlevel)
                self.transform[dim] += scale
        else:
            if xstride == 0:  # nothing to extrapolate from: simulate child #0 for real
                self.space_stamp[-1] = base
                spatial_deltas[base] = self.compute_deltas(lv - 1)
                self.transform[dim] += scale
                i, xstride, xlevel = 1, 1, lv
            else:
                xstride *= end
            if i < end:
                vectors = self.translation_vectors(xlevel)
            for i in range(i, end):
                src = spatial_deltas[base + i - xstride]
                spatial_deltas[base + i] = [_translate(s, v) for s, v in zip(src, vectors)]
        self.transform[dim] = saved

    def multicast_accesses(self, spatial_deltas, unaccounted):
        """ComputeAccurateMulticastedAccesses: children with identical deltas form one multicast
        group. Returns per dataspace {(multicast, scatter): accesses}."""
        stats = []
        for t in range(self.T):
            groups = {}  # delta -> number of children receiving it
            for idx in sorted(unaccounted[t]):
                key = frozenset(spatial_deltas[idx][t])
                groups[key] = groups.get(key, 0) + 1
            temp = {}  # multicast -> [accesses, scatter]
            for key, multicast in groups.items():
                size = sum(_box_size(b) for b in key)
                if size > 0:
                    entry = temp.setdefault(multicast, [0, 0])
                    entry[0] += size * self.epochs
                    entry[1] += 1
            stats.append({(m, sc): acc for m, (acc, sc) in temp.items()})
        return stats

    def network_link_transfers(self, lv, spatial_deltas, state):
        """ComputeNetworkLinkTransfers (non-toroidal): a child whose delta equals a mesh
        neighbour's delta of the previous step gets it over a link."""
        phys_x, phys_y = self.physical_fanout[self.storage_level[lv]]
        h_size, v_size = max(phys_x, self.fanout_x[lv]), max(phys_y, self.fanout_y[lv])
        prev = state.prev_spatial_deltas
        links, unaccounted = [0] * self.T, [set(spatial_deltas) for _ in range(self.T)]
        for idx, delta in spatial_deltas.items():
            h, v = idx % h_size, idx // h_size
            neighbours = []
            if v_size > 1:
                neighbours += [(h, v - 1)] * (v >= 1) + [(h, v + 1)] * (v < v_size - 1)
            if h_size > 1:
                neighbours += [(h - 1, v)] * (h >= 1) + [(h + 1, v)] * (h < h_size - 1)
            for t in range(self.T):
                if _size(delta[t]) and any(vv * h_size + hh in prev and _same(delta[t], prev[vv * h_size + hh][t])
                                           for hh, vv in neighbours):
                    links[t] += _size(delta[t]) * self.epochs
                    unaccounted[t].discard(idx)
        state.prev_spatial_deltas = spatial_deltas
        return links, unaccounted

    def run(self):
        self.compute_deltas(len(self.nest) - 1)
        return self


# ----------------------------------------------------------------------------- tiling


def _collapse(na, t, keep_t, read_write):
    """tiling::CollapseDataMovementNest for one dataspace t (keep_t[l]: level l keeps it)."""
    t_tiles = []  # one record per valid loop (temporal or master spatial), inner to outer
    for i, lp in enumerate(na.nest):
        if lp.kind != "T" and not na.master[i]:
            continue
        states = list(na.live_state[i].values())
        n = len(states)
        access = {}
        for s in states:
            for k, v in s.access_stats[t].items():
                access[k] = access.get(k, 0) + v
        t_tiles.append(dict(loop=i, size=sum(s.max_size[t] for s in states) // n,
                            access={k: v / n for k, v in access.items()},
                            link=sum(s.link_transfers[t] for s in states) / n,
                            rep=na.num_spatial_elems[i], fanout=na.fanout[i], master=na.master[i]))
    tiles, start = [], 0
    for b in na.boundaries:
        block = [x for x in t_tiles if start <= x["loop"] <= b]
        inner, outer = block[0], block[-1]
        tile = dict(size=outer["size"], access=dict(inner["access"]), link=inner["link"], rep=outer["rep"],
                    fanout=inner["fanout"], partition=0, share=0.0, peer_accesses=0.0, peer_fills=0.0, den=0)
        tile["content"] = sum(tile["access"].values())
        if tiles:
            tiles[-1]["den"] = inner["size"] if inner["master"] else tiles[-1]["size"]
        tiles.append(tile)
        start = b + 1
    L = len(tiles)
    # ComputePartitionSizes (integer arithmetic, like size_t).
    part = tiles[-1]["size"]
    tiles[-1]["partition"] = part
    for c in range(L - 2, -1, -1):
        if tiles[c]["den"]:
            part = part * tiles[c]["size"] // tiles[c]["den"]
        tiles[c]["partition"] = part
    # ComputeParentAccessShare: sum(accesses * multicast) / logical fan-out of the parent.
    for c in range(L - 1):
        tiles[c]["share"] = sum(acc * m / tiles[c + 1]["fanout"] for (m, _), acc in tiles[c + 1]["access"].items())
    # MaskTiles: a bypassing level hands its children's traffic to the next outer level.
    for c in range(L):
        if tiles[c]["size"] == 0 or keep_t[c]:
            continue
        outer = next((o for o in range(c + 1, L) if tiles[o]["size"]), None)
        if outer is None:
            tiles[c].update(size=0, partition=0, content=0, share=0)
            break
        weighted = sum(acc * m for (m, _), acc in tiles[outer]["access"].items())  # WeightedAccesses
        factor = tiles[c]["content"] * tiles[outer]["fanout"] / weighted if weighted else 0.0
        for k, acc in tiles[outer]["access"].items():
            if acc:
                tiles[outer]["access"][k] = acc * factor
                tiles[outer]["link"] = 0
        tiles[outer]["content"] = sum(tiles[outer]["access"].values())
        tiles[c].update(size=0, partition=0, content=0, share=0)
    # ProcessOuterMaskedLevels.
    for c in range(L - 1, -1, -1):
        if not keep_t[c]:
            tiles[c].update(size=0, partition=0, content=0, share=0, access={}, link=0, rep=0, fanout=0)
        else:
            tiles[c]["share"] = 0
            break
    # ComputePeerAccesses.
    for c in range(L - 1, 0, -1):
        if tiles[c]["link"]:
            per_child = tiles[c]["link"] / tiles[c - 1]["rep"]
            tiles[c - 1]["peer_accesses"] += per_child
            tiles[c - 1]["peer_fills"] += per_child
    # ComputeReadUpdateReductionAccesses_Legacy with first-read elision.
    for tile in tiles:
        ca, pa, ps, pf, p = tile["content"], tile["peer_accesses"], tile["share"], tile["peer_fills"], tile["partition"]
        if tile["size"] == 0:
            tile.update(reads=0, fills=0, updates=0)
        elif read_write:
            # fills is a uint64 in C++; at the backing store ps - p < 0 and Timeloop reports 0.
            tile.update(updates=_cpp_round(ca), reads=_cpp_round(ca + pa - p), fills=max(0, _cpp_round(ps + pf - p)))
        else:
            tile.update(reads=_cpp_round(ca + pa), updates=0, fills=int(ps + pf))  # double -> uint64 truncates
    return tiles


def simulate(workload, arch, mapping, link_transfers=True, old_stride_rule=False):
    """Timeloop's per-instance counts for one mapping. Lists are indexed [level][dataspace],
    level 0 innermost: tile ("Utilized capacity"), partition ("Partition size"), reads, fills,
    updates ("Scalar ... (per-instance)"), link_transfers; utilized_instances is per level;
    macs is the total compute count and compute_cycles the product of temporal loop bounds.

    link_transfers=False is TIMELOOP_DISABLE_LINK_TRANSFERS. old_stride_rule=True uses the
    SaveAndSubtractIfSameStride of older Timeloop builds (source as at NVlabs/timeloop ae00e21):
    it remembers a zero translation, so the first move after a stationary stretch refetches the
    whole tile. That reproduces the numbers the timeloop-accelergy-exercises ship, which differ
    from current Timeloop in sliding-window Inputs fills (e.g. Eyeriss-like shared_glb)."""
    na = NestAnalysis(workload, arch, mapping, link_transfers, old_stride_rule).run()
    L, T = len(arch.levels), len(workload.dataspaces)
    out = {k: [[0] * T for _ in range(L)] for k in ("tile", "partition", "reads", "fills", "updates", "link_transfers")}
    for t, ds in enumerate(workload.dataspaces):
        tiles = _collapse(na, t, [bool(mapping.keep[lv, t]) for lv in range(L)], ds.read_write)
        for lv, tile in enumerate(tiles):
            for key, src in (("tile", "size"), ("partition", "partition"), ("reads", "reads"), ("fills", "fills"),
                             ("updates", "updates"), ("link_transfers", "link")):
                out[key][lv][t] = tile[src]
    out["utilized_instances"] = [na.num_spatial_elems[b] for b in na.boundaries]
    out["macs"] = prod(workload.bounds)
    out["compute_cycles"] = prod(lp.end for lp in na.nest if lp.kind == "T")
    return out
