"""Bandwidth-limited cycles follow Timeloop's float steps (BufferLevel::ComputePerformance).

cycles = ceil(C / slowdown) with slowdown = bandwidth / sum_t(count_t / C): the quotient is
mathematically sum_t count_t / bandwidth, but in double it can land just above an integer, and
Timeloop then reports one cycle more. These tests pin that rounding."""

import math

import jax.numpy as jnp
import numpy as np
from conftest import TIMELOOP_REF

import jaxloop
from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import load_tables
from jaxloop.mapspace import MappingBatch
from jaxloop.model.evaluate import evaluate
from jaxloop.model.latency import bandwidth_cycles

INF = math.inf


def timeloop_cycles(C, reads, writes, read_bw, write_bw, shared_bw):
    """A literal transcription of Timeloop's steps on Python floats."""
    r = 0.0
    for x in reads:  # std::accumulate over the dataspaces, from 0.0
        r += x / C
    w = 0.0
    for x in writes:
        w += x / C
    slow = 1.0
    for bw, demand in ((read_bw, r), (write_bw, w), (shared_bw, r + w)):
        if bw < demand:
            slow = min(slow, bw / demand)
    return math.ceil(C / slow)


def test_rounding_example():
    """173,695 words at 1 word/cycle: Timeloop reports 173,696 cycles."""
    reads = [np.float64(x) for x in (89978, 28390, 55327)]
    assert sum(reads) == 173695
    got = float(bandwidth_cycles(np.float64(3123), reads, [np.float64(0)], 1.0, INF, INF))
    assert got == timeloop_cycles(3123.0, reads, [0.0], 1.0, INF, INF) == 173696


def test_random_levels_match_transcription():
    rng = np.random.default_rng(7)
    n, T = 4000, 3
    C = rng.integers(1, 5000, n).astype(float)
    reads = rng.integers(0, 100_000, (T, n)).astype(float)
    writes = rng.integers(0, 100_000, (T, n)).astype(float)
    choices = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 10.0, 16.0, INF])
    rbw, wbw, sbw = (choices[rng.integers(0, len(choices), n)] for _ in range(3))
    got = np.asarray(bandwidth_cycles(C, list(reads), list(writes), rbw, wbw, sbw))
    want = [timeloop_cycles(C[i], reads[:, i], writes[:, i], rbw[i], wbw[i], sbw[i]) for i in range(n)]
    assert got.tolist() == want
    exact = np.maximum(C, np.ceil(np.maximum.reduce([reads.sum(0) / rbw, writes.sum(0) / wbw,
                                                     (reads + writes).sum(0) / sbw])))
    assert (got != exact).any()  # the float steps matter on these inputs


def test_evaluate_uses_timeloop_steps():
    """End to end: tl06's reference mapping with its DRAM read bandwidth squeezed; every
    level's cycles equal the transcription applied to the kernel's own counts."""
    case = TIMELOOP_REF / "tl06-mapper-convlayer-eyeriss-vgg02l5"
    spec = jaxloop.load_spec(case / "input.yaml")
    static, arr = compile_spec(spec, load_tables(case / "ERT.yaml"))
    batch = MappingBatch.from_mappings([spec.mapping])
    seen = set()
    for bw in (0.3, 0.7, 1.0, 1.3, 3.0, 7.0):
        a = dict(arr, read_bw=jnp.asarray(arr["read_bw"]).at[-1].set(bw))
        st = evaluate(static, a, batch)
        C = float(st.computes[0] / st.mac_instances[0])
        r, f, u = (np.asarray(x[0]) for x in (st.reads, st.fills, st.updates))
        rb, wb, sb = (np.asarray(a[k]) for k in ("read_bw", "write_bw", "shared_bw"))
        want = [timeloop_cycles(C, r[lv], f[lv] + u[lv], rb[lv], wb[lv], sb[lv]) for lv in range(len(r))]
        assert np.asarray(st.level_cycles[0]).tolist() == want
        assert float(st.cycles[0]) == max(want)
        seen.add(want[-1] > C)
    assert seen == {True, False}  # both bandwidth-bound and not
