"""Cycles: compute cycles stretched by the most bandwidth-starved level (Timeloop's throughput model)."""

import jax.numpy as jnp


def cycles(arr, t_total, reads, fills, updates):
    """Per-level cycles [B, L] and total cycles [B]. Bandwidths are words/cycle per instance."""
    r = reads.sum(axis=2)
    w = (fills + updates).sum(axis=2)
    need = jnp.maximum(jnp.maximum(r / arr["read_bw"], w / arr["write_bw"]), (r + w) / arr["shared_bw"])
    level = jnp.maximum(t_total[:, None], jnp.ceil(need))
    return level, jnp.max(level, axis=1)
