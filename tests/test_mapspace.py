"""The mapspace: exact sizes, the index <-> mapping bijection, constraints, and that every
pruning it does changes no cost (checked against the kernel)."""

import itertools
import math

import jax
import numpy as np
import pytest
from conftest import TIMELOOP_REF

from jaxloop.compiler import compile_spec
from jaxloop.constraints import Constraints, load_mapper_inputs, parse_constraints
from jaxloop.energy.ert import load_tables
from jaxloop.errors import SpecError
from jaxloop.mapspace import MappingBatch, Mapspace, count_factorizations, ordered_factorizations
from jaxloop.model.evaluate import evaluate, evaluate_one
from jaxloop.spec import load_spec
from jaxloop.timeloop_stats import parse_stats

TL05 = {name: TIMELOOP_REF / f"tl05-mapper-conv1d+oc-3level-{name}" for name in ("baked", "freebypass", "null")}
TL05_CONS = {"baked": "conv1d+oc-3level-1mapping", "freebypass": "conv1d+oc-3level-freebypass", "null": "null"}
TL06 = TIMELOOP_REF / "tl06-mapper-convlayer-eyeriss-vgg02l5"
ED = {c: TIMELOOP_REF / f"ed-{c}" for c in ("eyeriss_like", "simba_like", "simple_output_stationary",
                                           "simple_weight_stationary")}
_cache = {}


def tl05(name):
    if name not in _cache:
        d = TL05[name]
        spec, c = load_mapper_inputs(d / "input.yaml", d / "mapper-src/constraints" / f"{TL05_CONS[name]}.constraints.yaml",
                                     d / "mapper-src/mapper/exhaustive.mapper.yaml")
        _cache[name] = (spec, c, Mapspace(spec, c), load_tables(d / "ERT.yaml", d / "ART.yaml"))
    return _cache[name]


def case(d, arch="mapper-src/arch.yaml"):
    key = (str(d), arch)
    if key not in _cache:
        spec, c = load_mapper_inputs(d / "input.yaml", d / arch)
        _cache[key] = (spec, c, Mapspace(spec, c), load_tables(d / "ERT.yaml", d / "ART.yaml"))
    return _cache[key]


def free_os():
    """simple_output_stationary without its constraints (a 16x16 mesh, everything free)."""
    if "free_os" not in _cache:
        spec, c, ms, table = case(ED["simple_output_stationary"])
        _cache["free_os"] = (spec, Constraints.empty(spec), Mapspace(spec, Constraints.empty(spec)), table)
    return _cache["free_os"]


def rows(batch):
    return np.concatenate([np.asarray(x).reshape(np.asarray(x).shape[0], -1) for x in batch], axis=1)


# ------------------------------------------------------------------------------ factorizations

def test_ordered_factorizations_count():
    for n, k in [(1, 3), (16, 3), (32, 3), (3, 3), (360, 4), (56, 9)]:
        tab = ordered_factorizations(n, [1] * k, [n] * k)
        assert tab.shape[0] == count_factorizations(n, k)
        assert (tab.prod(axis=1) == n).all()
        assert len({tuple(r) for r in tab}) == tab.shape[0]
    # SPEC-dense 7.2: f(3,3)=3, f(16,3)=15, f(32,3)=21
    assert [count_factorizations(n, 3) for n in (3, 16, 32)] == [3, 15, 21]
    box = ordered_factorizations(64, [1, 2, 1], [8, 64, 1])
    assert box.shape[0] > 0 and (box[:, 0] <= 8).all() and (box[:, 1] >= 2).all() and (box[:, 2] == 1).all()


# ------------------------------------------------------------------------------ sizes (tl05)

def test_tl05_baked_is_one_mapping_equal_to_timeloop():
    spec, c, ms, table = tl05("baked")
    assert ms.size == 1
    m = ms.mapping(0)
    static, karr = compile_spec(spec, table)
    st = evaluate(static, karr, MappingBatch.from_mappings([m] * 256))  # the batch shape the other tl05 tests use
    ref = parse_stats(TL05["baked"] / "timeloop-model.stats.txt")
    assert int(st.cycles[0]) == ref["summary"]["Cycles"]
    fj = float(st.energy[0]) / float(st.computes[0]) * 1e3
    assert abs(fj - ref["summary"]["fJ/Compute"]["Total"]) <= 1e-3 * ref["summary"]["fJ/Compute"]["Total"]
    for l, lv in enumerate(spec.arch.levels):
        for t, ds in enumerate(spec.workload.dataspaces):
            r = ref[lv.name].get(ds.name)
            assert bool(m.keep[l, t]) == (r is not None)
            if r:
                assert float(st.reads[0, l, t]) == r["Scalar reads (per-instance)"]
                assert float(st.fills[0, l, t]) == r["Scalar fills (per-instance)"]
                assert float(st.updates[0, l, t]) == r["Scalar updates (per-instance)"]


def test_tl05_freebypass_is_64_bypass_combinations():
    spec, c, ms, _ = tl05("freebypass")
    assert ms.size == 64 and ms.nb == 64 and ms.if_size == 1 and ms.n_orders == 1
    b = ms.decode(np.arange(64))
    keeps = np.asarray(b.keep)
    assert keeps[:, -1].all()  # the outermost level keeps everything
    assert len({k.tobytes() for k in keeps}) == 64
    assert (np.asarray(b.temporal) == np.asarray(b.temporal)[:1]).all()


def test_tl05_null_size_vs_timeloop_uber():
    """SPEC-dense 7.2 counts Timeloop's unpruned Uber space: IF 945 x perm 3!*3! x bypass 64 =
    2,177,280 ids. jaxloop enumerates each distinct mapping once: loop orders only among the
    non-unit loops of the GlobalBuffer and MainMemory levels (the RegisterFile's order never
    matters), so the perm factor is sum over IF of k1! * k2! = 4,115 (not 945 * 36 = 34,020):
    4,115 x 64 = 263,360. The brute force below collapses Timeloop's 34,020 (IF, perm) ids by
    "same non-unit loop order at levels 1 and 2" and finds exactly 4,115 classes."""
    spec, c, ms, _ = tl05("null")
    d = ms.describe()
    assert d["timeloop_unpruned"]["size"] == 2_177_280
    assert d["timeloop_unpruned"]["index_factorizations"] == 945 == ms.if_size
    assert d["timeloop_unpruned"]["permutations"] == 36
    assert ms.nb == 64 and ms.n_orders == 4115 and ms.size == 263_360
    tabs = [ordered_factorizations(b, [1] * 3, [b] * 3) for b in spec.workload.bounds]
    classes = set()
    for f in itertools.product(*tabs):
        F = np.array(f)
        for p1 in itertools.permutations(range(3)):
            for p2 in itertools.permutations(range(3)):
                classes.add((F.tobytes(), tuple(x for x in p1 if F[x, 1] > 1), tuple(x for x in p2 if F[x, 2] > 1)))
    assert len(classes) == 4115
    # and the bijection hits every one of the 263,360 mappings exactly once
    allb = ms.decode(np.arange(ms.size))
    assert len(np.unique(rows(allb), axis=0)) == ms.size


# ------------------------------------------------------------------------------ bijection

@pytest.mark.parametrize("name", ["null", "freebypass", "baked"])
def test_roundtrip_tl05(name):
    spec, c, ms, _ = tl05(name)
    idx = np.unique(np.random.default_rng(1).integers(0, ms.size, 256))
    b = ms.decode(idx)
    for i, ix in enumerate(idx):
        m = b.mapping(i)
        assert ms.encode(m) == ix
        again = ms.decode(np.array([ms.encode(m)]))
        assert (rows(again) == rows(MappingBatch(*(np.asarray(x)[i:i + 1] for x in b)))).all()


def test_roundtrip_and_reference_mappings_constrained():
    """Eyeriss (tl06) and the example designs: random indices round-trip, and the reference
    mapping Timeloop's mapper found lies in our mapspace."""
    for d, arch in [(TL06, "mapper-src/arch/eyeriss_like.yaml"), (ED["simple_weight_stationary"], "mapper-src/arch.yaml")]:
        spec, c, ms, _ = case(d, arch)
        assert ms.flat
        idx = np.random.default_rng(2).integers(0, ms.size, 64)
        b = ms.decode(idx)
        for i in range(0, 64, 5):
            assert ms.encode(b.mapping(i)) == idx[i]
        ref = load_spec(d / "input.yaml").mapping
        j = ms.encode(ref)
        m = ms.mapping(j)
        assert (m.temporal == ref.temporal).all() and (m.keep == ref.keep).all()
        assert (m.spatial_x * m.spatial_y == ref.spatial_x * ref.spatial_y).all()


def test_genome_decode_matches_flat_decode():
    spec, c, ms, _ = case(TL06, "mapper-src/arch/eyeriss_like.yaml")
    b = ms.decode(np.random.default_rng(3).integers(0, ms.size, 64))
    again = ms.decode_genome(ms.genome_of(b))
    assert (rows(again) == rows(b)).all()


# ------------------------------------------------------------------------------ constraints

def _check_constraints(ms, batch):
    c = ms.constraints
    b = MappingBatch(*(np.asarray(x) for x in batch))
    lo, hi = ms.box_unpruned
    F = np.ones((b.size, ms.D, ms.S), np.int64)
    F[:, :, :ms.L] = np.transpose(b.temporal, (0, 2, 1))
    sp = b.spatial_x * b.spatial_y
    for i, lv in enumerate(ms.sp_levels):
        F[:, :, ms.L + i] = sp[:, lv]
    assert (F >= lo[None]).all() and (F <= hi[None]).all()
    assert (F.prod(axis=2) == np.array(ms.bounds)[None]).all()
    for lv in range(ms.L):
        if lv not in ms.sp_levels:
            assert (sp[:, lv] == 1).all()
        sc = c.temporal[lv]
        for r in range(b.size):
            order = [d for d in b.perm[r, lv] if b.temporal[r, lv, d] > 1]
            pre = [d for d in (sc.prefix or []) if b.temporal[r, lv, d] > 1]
            suf = [d for d in (sc.suffix or []) if b.temporal[r, lv, d] > 1]
            assert order[:len(pre)] == pre
            assert not suf or order[-len(suf):] == suf
            assert sorted(b.perm[r, lv]) == list(range(ms.D))
    fixed = c.keep != -1
    assert (b.keep[:, fixed] == (c.keep[fixed] == 1)[None]).all()
    assert b.keep[:, -1].all()
    for i, lv in enumerate(ms.sp_levels):  # split: dims on X form an allowed set
        sc = c.spatial[lv]
        if sc.split is not None and sc.prefix is not None and not (set(sc.prefix) | set(sc.suffix)) ^ set(range(ms.D)):
            order = sc.prefix + sc.suffix
            for r in range(b.size):
                for pos, d in enumerate(order):
                    if sp[r, lv, d] > 1:
                        on_x = b.spatial_x[r, lv, d] > 1
                        assert on_x == (pos < sc.split), (lv, d, pos, sc.split)


@pytest.mark.parametrize("which", ["tl06", "eyeriss_like", "simba_like", "simple_output_stationary",
                                   "simple_weight_stationary"])
def test_random_mappings_satisfy_constraints(which):
    spec, c, ms, _ = case(TL06, "mapper-src/arch/eyeriss_like.yaml") if which == "tl06" else case(ED[which])
    if ms.flat:
        batch = ms.decode(np.random.default_rng(4).integers(0, ms.size, 256))
    else:
        batch = ms.decode_genome(ms.random_genome(jax.random.PRNGKey(4), 256))
    _check_constraints(ms, batch)


def test_eyeriss_constraints_parsed():
    spec, c, ms, _ = case(TL06, "mapper-src/arch/eyeriss_like.yaml")
    names, dims = spec.arch.names, spec.workload.dims
    dummy = names.index("inter_PE_column_spatial")
    assert c.spatial[dummy].split == 7 and [dims[d] for d in c.spatial[dummy].prefix] == list("NCPRSQM")
    assert all(c.temporal[dummy].fixed[d] == 1 for d in range(len(dims)))  # timeloopfe's dummy-level default
    ifmap = names.index("ifmap_spad")
    assert list(c.keep[ifmap]) == [0, 1, 0]  # keeps Inputs; the !Parallel siblings' dataspaces bypass
    glb = names.index("shared_glb")
    assert c.keep[glb, spec.workload.ds_index("Weights")] == 0
    # the PE row fanout is along Y only: everything spatial there runs along Y
    b = ms.decode(np.arange(0, ms.size, ms.size // 50))
    pe = names.index("inter_PE_spatial")
    assert (np.asarray(b.spatial_x)[:, pe] == 1).all()


def test_constraint_forms_and_errors():
    spec = load_spec(TL05["null"] / "input.yaml", need_mapping=False)
    doc = {"targets": [
        {"target": "GlobalBuffer", "type": "temporal", "factors": "K<=4 P>=2 R=0", "permutation": "P_K"},
        {"target": "RegisterFile", "type": "temporal", "factors": ["K=2"], "permutation": ["K", "R", "P"]},
        {"target": "GlobalBuffer", "type": "bypass", "keep": ["Inputs"], "bypass": ["Weights"]},
    ]}
    c = parse_constraints(spec, extra_sections=[("test", doc)])
    gb, rf = spec.arch.names.index("GlobalBuffer"), spec.arch.names.index("RegisterFile")
    K, R, P = (spec.workload.dims.index(x) for x in "KRP")
    assert c.temporal[gb].max == {K: 4} and c.temporal[gb].min == {P: 2} and c.temporal[gb].fixed == {R: 3}
    assert c.temporal[gb].prefix == [P] and c.temporal[gb].suffix == [K]
    assert c.temporal[rf].prefix == [K, R, P] and c.temporal[rf].suffix == []
    ms = Mapspace(spec, c)
    _check_constraints(ms, ms.decode(np.random.default_rng(5).integers(0, ms.size, 300)))
    bad = {"targets": [{"target": "GlobalBuffer", "type": "temporal", "factors": "K=4"},
                       {"target": "GlobalBuffer", "type": "temporal", "factors": "K=8"},
                       {"target": "Nowhere", "type": "temporal", "factors": "K=8"},
                       {"target": "GlobalBuffer", "type": "temporal", "factors": "Z=8"}]}
    with pytest.raises(SpecError) as e:
        parse_constraints(spec, extra_sections=[("bad", bad)])
    text = "\n".join(e.value.problems)
    assert "re-specification" in text and "Nowhere" in text and "Z=8" in text
    with pytest.raises(SpecError, match="does not divide"):
        parse_constraints(spec, extra_sections=[("x", {"targets": [{"target": "GlobalBuffer", "type": "temporal",
                                                                     "factors": "K=5"}]})])


def test_split_and_count_constraint_on_2d_mesh():
    """A free spatial level on a 16x16 mesh: the X set is chosen so the factors fit whenever
    some assignment does; with a split and a partial permutation the allowed X sets follow
    Timeloop's rule (the first `split` loops of the permutation run along X)."""
    spec, c, ms, _ = case(ED["simple_weight_stationary"])
    pe = spec.arch.names.index("inter_PE_spatial")
    C, M = spec.workload.dims.index("C"), spec.workload.dims.index("M")
    i = ms.sp_levels.index(pe)
    assert ms.x_masks[i].tolist() == [[d == C for d in range(ms.D)]]  # permutation [C, M], split 1: C on X, M on Y
    free = Constraints.empty(spec)
    ms2 = Mapspace(spec, free)
    j = ms2.sp_levels.index(pe)
    assert ms2.x_masks[j].shape[0] == 2 ** int(sum(ms2.tables[d][:, ms2.L + j].max() > 1 for d in range(ms2.D)))


# ------------------------------------------------------------------------------ pruning is cost-free

def _same_costs(a, b):
    fields = ("energy", "cycles", "reads", "fills", "updates", "tile", "computes")
    return all(np.array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f))) for f in fields)


def test_unit_loop_positions_and_innermost_order_change_no_cost():
    """Loop orders differing only in where unit-factor loops sit, or in the innermost level's
    order, give identical counts, energy and cycles."""
    rng = np.random.default_rng(6)
    for spec, c, ms, table in (tl05("null"), free_os()):
        static, karr = compile_spec(spec, table)
        b = ms.decode(rng.integers(0, ms.size, 256)) if ms.flat else ms.decode_genome(
            ms.random_genome(jax.random.PRNGKey(6), 256))
        b = MappingBatch(*(np.asarray(x) for x in b))
        perm = b.perm.copy()
        for r in range(b.size):
            for lv in range(ms.L):
                nonunit = [d for d in perm[r, lv] if b.temporal[r, lv, d] > 1]
                unit = [d for d in range(ms.D) if b.temporal[r, lv, d] == 1]
                if lv == 0:
                    nonunit = list(rng.permutation(nonunit))
                order = nonunit[:]
                for u in rng.permutation(unit):  # scatter the unit loops anywhere
                    order.insert(int(rng.integers(0, len(order) + 1)), int(u))
                perm[r, lv] = order
        assert (perm != b.perm).any()
        other = b._replace(perm=perm)
        assert _same_costs(evaluate(static, karr, b), evaluate(static, karr, other))


def test_xy_split_changes_only_validity():
    """Moving spatial loops between X and Y changes no count, energy or cycles; decode picks an
    assignment that fits whenever one exists."""
    spec, c, free, table = free_os()
    static, karr = compile_spec(spec, table)
    b = free.decode_genome(free.random_genome(jax.random.PRNGKey(7), 256))
    b = MappingBatch(*(np.asarray(x) for x in b))
    lv = free.sp_levels[0]
    fx, fy = free.fanout[lv]
    sp = b.spatial_x[:, lv] * b.spatial_y[:, lv]
    alts, owner, fits = [], [], []
    for r in range(b.size):
        nonunit = [d for d in range(free.D) if sp[r, d] > 1]
        if len(alts) + 2 ** len(nonunit) > 256:
            break
        for k in range(len(nonunit) + 1):
            for xs in itertools.combinations(nonunit, k):
                sx, sy = b.spatial_x[r].copy(), b.spatial_y[r].copy()
                sx[lv] = [sp[r, d] if d in xs else 1 for d in range(free.D)]
                sy[lv] = [1 if d in xs else sp[r, d] for d in range(free.D)]
                alts.append((b.temporal[r], sx, sy, b.perm[r], b.keep[r]))
                owner.append(r)
                fits.append(math.prod(sx[lv]) <= fx and math.prod(sy[lv]) <= fy)
    alts += [alts[-1]] * (256 - len(alts))
    alt = MappingBatch(*(np.stack([a[i] for a in alts]) for i in range(5)))
    st_alt = evaluate(static, karr, alt)
    st = evaluate(static, karr, b)
    owner = np.array(owner)
    assert len(set(owner)) > 20
    for f in ("energy", "cycles", "reads", "fills", "updates", "tile", "computes"):
        ours = np.asarray(getattr(st, f))[owner]
        theirs = np.asarray(getattr(st_alt, f))[:len(owner)]
        assert np.array_equal(ours, theirs), f
    fits = np.array(fits)
    for r in sorted(set(owner)):
        decoded_fits = np.prod(b.spatial_x[r, lv]) <= fx and np.prod(b.spatial_y[r, lv]) <= fy
        assert decoded_fits == fits[owner == r].any()


def test_fanout_pruning_removes_only_invalid_mappings():
    """prune_fanout drops spatial factors no mesh axis can hold: every mapping with one is invalid."""
    spec, c, pruned, table = free_os()
    full = Mapspace(spec, c, prune_fanout=False)
    assert pruned.size < full.size
    lv = full.sp_levels[0]
    fx, fy = full.fanout[lv]
    s = full.L
    dropped = [(d, r) for d in range(full.D) for r in full.tables[d] if r[s] > max(fx, fy)]
    assert dropped and all(r[s] <= max(fx, fy) for d in range(full.D) for r in pruned.tables[d])
    static, karr = compile_spec(spec, table)
    b = full.decode_genome(full.random_genome(jax.random.PRNGKey(8), 256))
    st = np.asarray(evaluate(static, karr, b).status)
    sp = np.asarray(b.spatial_x) * np.asarray(b.spatial_y)
    too_big = (sp[:, lv] > max(fx, fy)).any(axis=1)
    assert too_big.any() and (st[too_big] != 0).all()


def test_float_divmod_is_exact_below_2_53():
    """The decoder divides indices in float64 when the mapspace has fewer than 2**53 points."""
    import jax.numpy as jnp

    ms = tl05("null")[2]
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(0, 2**53, 20000), rng.integers(0, 1000, 2000), [2**53 - 1, 0]])
    b = np.concatenate([rng.integers(1, 2**26, 20000), rng.integers(1, 30, 2000), [3, 7]])
    q, r = (np.asarray(x) for x in ms._divmod(jnp.asarray(a, jnp.int64), jnp.asarray(b, jnp.int64)))
    assert ms.size < 2**53
    assert np.array_equal(q, a // b) and np.array_equal(r, a % b)
