"""Cycles: compute cycles stretched by the most bandwidth-starved level (Timeloop's throughput model)."""

import jax.numpy as jnp

from jaxloop.model import fold


def bandwidth_cycles(compute_cycles, reads, writes, read_bw, write_bw, shared_bw):
    """Cycles of storage levels (Timeloop's BufferLevel::ComputePerformance), elementwise.

    `reads`, `writes`: per-dataspace arrays of words per instance; bandwidths are words/cycle
    per instance and broadcast against them (inf: unlimited). Timeloop's float steps, in its
    order: each dataspace's demand count / compute cycles, summed in dataspace order; slowdown =
    min(1, bandwidth / demand) over read, write and shared; cycles = ceil(compute / slowdown).
    The ceil turns a last-bit difference into a cycle, so the order is not left to a reduction."""
    r = sum(x / compute_cycles for x in reads)
    w = sum(x / compute_cycles for x in writes)
    slow = jnp.ones_like(r)
    for bw, demand in ((read_bw, r), (write_bw, w), (shared_bw, r + w)):
        slow = jnp.where(bw < demand, jnp.minimum(slow, bw / demand), slow)
    return jnp.ceil(compute_cycles / slow)


def cycles(arr, t_total, reads, fills, updates):
    """Per-level cycles [L, B] and total cycles [B] from counts [L, T, B] (batch-last)."""
    T = reads.shape[1]
    bw = lambda k: arr[k][:, None]  # noqa: E731
    level = bandwidth_cycles(t_total[None, :], [reads[:, t] for t in range(T)],
                             [fills[:, t] + updates[:, t] for t in range(T)], bw("read_bw"), bw("write_bw"),
                             bw("shared_bw"))
    return level, fold.largest(level, 0)
