"""Kernel == literal loop-nest oracle, term by term, on random small problems and mappings.

Every term is checked twice: on 250 random cases with link transfers off in both (every
non-link term; these compiles are shared between designs that differ only in their meshes), and
on random cases with Timeloop's default, links on (jaxloop/model/links.py; the mesh is part of
the compiled shape, so fewer cases); test_link_transfers builds mappings where links certainly
occur.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import EnergyTable
from jaxloop.mapspace import MappingBatch
from jaxloop.model.evaluate import evaluate
from jaxloop.reference import simulate
from jaxloop.spec import Arch, ComputeLevel, DataSpace, Mapping, Spec, StorageLevel, Workload

FIELDS = ("reads", "fills", "updates", "tile", "partition")


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def problems(draw):
    """A random workload (conv1d/conv2d-like with strides and dilations, or a matmul), a random
    2-4 level architecture with spatial fan-outs, and a random mapping of it."""
    kind = draw(st.sampled_from(["conv1d", "conv2d", "matmul"]))
    b = lambda hi: draw(st.integers(1, hi))  # noqa: E731
    if kind == "conv1d":
        dims = ("K", "R", "P", "C")
        bounds = (b(6), b(4), b(8), b(3))
        ws, wd = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        spaces = (DataSpace("Weights", (((0, 1),), ((1, 1),), ((3, 1),))),
                  DataSpace("Inputs", (((3, 1),), ((1, wd), (2, ws)))),
                  DataSpace("Outputs", (((0, 1),), ((2, 1),)), read_write=True))
    elif kind == "conv2d":
        dims = ("R", "S", "P", "Q", "K")
        bounds = (b(3), b(3), b(4), b(4), b(4))
        spaces = (DataSpace("Weights", (((0, 1),), ((1, 1),), ((4, 1),))),
                  DataSpace("Inputs", (((0, 1), (2, 1)), ((1, 1), (3, draw(st.integers(1, 2)))))),
                  DataSpace("Outputs", (((4, 1),), ((2, 1),), ((3, 1),)), read_write=True))
    else:
        dims = ("M", "N", "K")
        bounds = (b(8), b(8), b(8))
        spaces = (DataSpace("A", (((0, 1),), ((2, 1),))), DataSpace("B", (((2, 1),), ((1, 1),))),
                  DataSpace("Z", (((0, 1),), ((1, 1),)), read_write=True))
    wl = Workload(kind, dims, bounds, spaces)
    L = draw(st.integers(2, 4))
    D, T = len(dims), len(spaces)
    # mesh grows toward the MACs: fanout (fx, fy) below each level
    fan = [(draw(st.sampled_from([1, 1, 2, 3, 4])), draw(st.sampled_from([1, 1, 2]))) for _ in range(L)]
    mx, my = 1, 1
    meshes = []
    for i in reversed(range(L)):
        meshes.append((mx, my))
        mx, my = mx * fan[i][0], my * fan[i][1]
    meshes = meshes[::-1]  # meshes[i] = mesh of storage level i
    levels = tuple(StorageLevel(f"L{i}", "SRAM", meshes[i][0] * meshes[i][1], meshes[i][0], meshes[i][1])
                   for i in range(L))
    arch = Arch(levels, ComputeLevel("MAC", "intmac", mx * my, mx, my))
    # random ordered factorization of each bound over slots (temporal + spatial x/y where fanout>1)
    temporal = np.ones((L, D), np.int64)
    sx, sy = np.ones((L, D), np.int64), np.ones((L, D), np.int64)
    # spatial factors: any X/Y split, but at most the level's fan-out in all (the kernel enumerates
    # link neighbours up to the physical fan-out; larger products are invalid mappings anyway)
    for d in range(D):
        rest = bounds[d]
        slots = [("t", l) for l in range(L)] + [("x", l) for l in range(L) if fan[l][0] > 1] + \
                [("y", l) for l in range(L) if fan[l][1] > 1]
        order = draw(st.permutations(slots))
        last = next(s for s in order if s[0] == "t")  # the remainder goes to a temporal slot
        for kind_, l in [s for s in order if s != last]:
            room = fan[l][0] * fan[l][1] // int(sx[l].prod() * sy[l].prod()) if kind_ != "t" else rest
            f = draw(st.sampled_from([x for x in divisors(rest) if x <= room]))
            rest //= f
            {"t": temporal, "x": sx, "y": sy}[kind_][l, d] *= f
        temporal[last[1], d] *= rest
    perm = np.array([draw(st.permutations(range(D))) for _ in range(L)], np.int64)
    keep = np.array([[draw(st.booleans()) for _ in range(T)] for _ in range(L)], bool)
    keep[-1] = True
    return wl, arch, Mapping(temporal, sx, sy, perm, keep)


TABLE = EnergyTable({n: {"read": 1.0, "write": 1.0, "update": 1.0, "leak": 0.0, "compute": 1.0}
                     for n in ["L0", "L1", "L2", "L3", "MAC"]})


def check(problem, links):
    wl, arch, m = problem
    static, arr = compile_spec(Spec(wl, arch), TABLE, links=links)
    st_ = evaluate(static, arr, MappingBatch.from_mappings([m]))
    ref = simulate(wl, arch, m, link_transfers=links)
    for f in FIELDS:
        ours = np.asarray(getattr(st_, f))[0]
        want = np.where(m.keep, np.array(ref[f], float), 0.0) if f in ("reads", "fills", "updates") else np.array(ref[f], float)
        if f in ("tile", "partition"):
            ours, want = np.where(m.keep, ours, 0), np.where(m.keep, want, 0)
        assert np.array_equal(ours, want), (f, ours.tolist(), want.tolist(), ref.get("link_transfers"))
    assert float(st_.computes[0]) == ref["macs"]
    return ref


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_kernel_equals_oracle(problem):
    check(problem, links=False)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_kernel_equals_oracle_with_links(problem):
    """Random problems with links on (each compiles its own kernel: few of them; the systolic
    ones below exercise the link transfers themselves)."""
    check(problem, links=True)


@st.composite
def systolic(draw):
    """conv1d with R spread over the MACs (X) and P stepping inside: each MAC's next input is its
    neighbour's current one (Timeloop forwards it over a link). Everything else is random."""
    bounds = (draw(st.integers(1, 4)), draw(st.integers(2, 4)), draw(st.integers(2, 8)), draw(st.integers(1, 3)))
    dims = ("K", "R", "P", "C")
    spaces = (DataSpace("Weights", (((0, 1),), ((1, 1),), ((3, 1),))),
              DataSpace("Inputs", (((3, 1),), ((1, 1), (2, 1)))),
              DataSpace("Outputs", (((0, 1),), ((2, 1),)), read_write=True))
    wl = Workload("conv1d", dims, bounds, spaces)
    R, fy = bounds[1], draw(st.sampled_from([1, 2]))
    levels = (StorageLevel("L0", "SRAM", 1, 1, 1), StorageLevel("L1", "SRAM", 1, 1, 1))
    arch = Arch(levels, ComputeLevel("MAC", "intmac", R * fy, R, fy))
    temporal = np.ones((2, 4), np.int64)
    sx, sy = np.ones((2, 4), np.int64), np.ones((2, 4), np.int64)
    sx[0, 1] = R
    p0 = draw(st.sampled_from([d for d in divisors(bounds[2]) if d > 1]))
    temporal[0, 2], temporal[1, 2] = p0, bounds[2] // p0
    for d in (0, 3):
        f = draw(st.sampled_from(divisors(bounds[d])))
        temporal[0, d], temporal[1, d] = f, bounds[d] // f
    perm = np.array([[2] + draw(st.permutations([0, 1, 3])), draw(st.permutations(range(4)))], np.int64)
    keep = np.array([[draw(st.booleans()) for _ in range(3)], [True] * 3])
    return wl, arch, Mapping(temporal, sx, sy, perm, keep)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(systolic())
def test_link_transfers(problem):
    """Mappings built so that Timeloop moves data over links: the kernel still equals the oracle."""
    ref = check(problem, links=True)
    assert np.array(ref["link_transfers"]).max() > 0


def test_every_dimension_of_bound_one():
    """A workload whose every dimension has bound 1 (the kernel keeps one of them: it leaves
    dimensions of bound 1 out, Static.unit_dims) equals the oracle; found by the property test."""
    wl = Workload("matmul", ("M", "N", "K"), (1, 1, 1),
                  (DataSpace("A", (((0, 1),), ((2, 1),))), DataSpace("B", (((2, 1),), ((1, 1),))),
                   DataSpace("Z", (((0, 1),), ((1, 1),)), read_write=True)))
    arch = Arch(tuple(StorageLevel(f"L{i}", "SRAM", 1, 1, 1) for i in range(2)), ComputeLevel("MAC", "intmac", 1, 1, 1))
    ones = np.ones((2, 3), np.int64)
    keep = np.array([[True, False, True], [True, True, True]])
    static, _ = compile_spec(Spec(wl, arch), TABLE, links=False)
    assert len(static.unit_dims) == 2
    check((wl, arch, Mapping(ones, ones, ones, np.array([[0, 1, 2], [2, 1, 0]]), keep)), links=False)


def test_unit_dimensions_left_out_of_the_kernel():
    """Without links the kernel leaves out dimensions of bound 1 outside sliding ranks
    (Static.unit_dims): the same Stats as with them in on random mappings, and a factor other
    than 1 on such a dimension is still flagged (status bit "factors"; the counts of such an
    invalid mapping leave the factor out)."""
    import dataclasses

    from jaxloop.model.status import FLAG_MEANINGS

    wl = Workload("matmul", ("M", "N", "K"), (12, 1, 8),
                  (DataSpace("A", (((0, 1),), ((2, 1),))), DataSpace("B", (((2, 1),), ((1, 1),))),
                   DataSpace("Z", (((0, 1),), ((1, 1),)), read_write=True)))
    arch = Arch(tuple(StorageLevel(f"L{i}", "SRAM", 1, 1, 1) for i in range(3)), ComputeLevel("MAC", "intmac", 1, 1, 1))
    static, arr = compile_spec(Spec(wl, arch), TABLE, links=False)
    assert static.unit_dims == (1,) and static.live().D == 2
    full = dataclasses.replace(static, unit_dims=())
    rng = np.random.default_rng(5)
    B, L, D = 256, 3, 3
    temporal = np.ones((B, L, D), np.int64)
    for b in range(B):
        for d, bound in ((0, 12), (2, 8)):
            rest = bound
            for lv in rng.permutation(L)[:-1]:
                f = rng.choice(divisors(rest))
                temporal[b, lv, d] = f
                rest //= f
            temporal[b, L - 1, d] *= rest
    temporal[:32, 0, 1] = 2  # a factor on N (bound 1): invalid
    perm = np.stack([[rng.permutation(D) for _ in range(L)] for _ in range(B)])
    keep = rng.random((B, L, 3)) < 0.6
    keep[:, -1] = True
    ones = np.ones_like(temporal)
    batch = MappingBatch(temporal, ones, ones, perm, keep)
    a, b = evaluate(static, arr, batch), evaluate(full, arr, batch)
    for f in FIELDS + ("cycles", "status", "energy"):
        assert np.array_equal(np.asarray(getattr(a, f))[32:], np.asarray(getattr(b, f))[32:]), f
    bit = 1 << FLAG_MEANINGS.index("factors")
    assert (np.asarray(a.status)[:32] & bit).all() and not (np.asarray(a.status)[32:] & bit).any()
    for m in (40, 41):  # and the oracle agrees on valid ones
        check((wl, arch, Mapping(temporal[m], ones[m], ones[m], perm[m], keep[m])), links=False)
