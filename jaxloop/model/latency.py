"""Cycles: compute cycles stretched by the most bandwidth-starved level (Timeloop's throughput model)."""

import jax.numpy as jnp


def cycles(arr, t_total, reads, fills, updates):
    """Per-level cycles [L, B] and total cycles [B] from counts [L, T, B]. Bandwidths are
    words/cycle per instance."""
    r = reads.sum(axis=1)
    w = (fills + updates).sum(axis=1)
    bw = lambda k: arr[k][:, None]  # noqa: E731
    need = jnp.maximum(jnp.maximum(r / bw("read_bw"), w / bw("write_bw")), (r + w) / bw("shared_bw"))
    level = jnp.maximum(t_total[None, :], jnp.ceil(need))
    return level, jnp.max(level, axis=0)
