"""Kernel == literal loop-nest oracle, term by term, on random small problems and mappings.

The oracle runs with Timeloop's link transfers off: the kernel does not model neighbour
forwarding between spatial instances (README, "Known differences"); with links on, the two
differ exactly where the oracle reports link transfers (test_link_transfers_are_the_only_gap).
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

LINKS = False
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
    for d in range(D):
        rest = bounds[d]
        slots = [("t", l) for l in range(L)] + [("x", l) for l in range(L) if fan[l][0] > 1] + \
                [("y", l) for l in range(L) if fan[l][1] > 1]
        order = draw(st.permutations(slots))
        for kind_, l in order[:-1]:
            f = draw(st.sampled_from(divisors(rest)))
            rest //= f
            {"t": temporal, "x": sx, "y": sy}[kind_][l, d] *= f
        kind_, l = order[-1]
        {"t": temporal, "x": sx, "y": sy}[kind_][l, d] *= rest
    perm = np.array([draw(st.permutations(range(D))) for _ in range(L)], np.int64)
    keep = np.array([[draw(st.booleans()) for _ in range(T)] for _ in range(L)], bool)
    keep[-1] = True
    return wl, arch, Mapping(temporal, sx, sy, perm, keep)


TABLE = EnergyTable({n: {"read": 1.0, "write": 1.0, "update": 1.0, "leak": 0.0, "compute": 1.0}
                     for n in ["L0", "L1", "L2", "L3", "MAC"]})


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_kernel_equals_oracle(problem):
    wl, arch, m = problem

    spec = Spec(wl, arch)
    static, arr = compile_spec(spec, TABLE)
    st_ = evaluate(static, arr, MappingBatch.from_mappings([m]))
    ref = simulate(wl, arch, m, link_transfers=LINKS)
    for f in FIELDS:
        ours = np.asarray(getattr(st_, f))[0]
        want = np.where(m.keep, np.array(ref[f], float), 0.0) if f in ("reads", "fills", "updates") else np.array(ref[f], float)
        if f in ("tile", "partition"):
            ours, want = np.where(m.keep, ours, 0), np.where(m.keep, want, 0)
        assert np.array_equal(ours, want), (f, ours.tolist(), want.tolist(), ref.get("link_transfers"))
    assert float(st_.computes[0]) == ref["macs"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_link_transfers_are_the_only_gap(problem):
    """Where Timeloop's link transfers change nothing, the kernel equals the full oracle."""
    wl, arch, m = problem
    full = simulate(wl, arch, m, link_transfers=True)
    if any(np.any(np.array(x) > 0) for x in full["link_transfers"]):
        return
    spec = Spec(wl, arch)
    static, arr = compile_spec(spec, TABLE)
    ours = evaluate(static, arr, MappingBatch.from_mappings([m]))
    for f in ("reads", "fills", "updates"):
        assert np.array_equal(np.asarray(getattr(ours, f))[0], np.where(m.keep, np.array(full[f], float), 0.0))
