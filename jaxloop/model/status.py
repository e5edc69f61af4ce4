"""Validity as bit flags with readable reasons (one mapping can fail several ways at once)."""

import jax.numpy as jnp

REASONS = (
    "capacity: tiles kept at a level exceed its size",
    "fanout X: spatial factors along X exceed the level's mesh",
    "fanout Y: spatial factors along Y exceed the level's mesh",
    "factors: tile factors do not multiply to the dimension bound",
    "keep: some dataspace is not kept at any level, or is kept where it cannot be",
    "min utilization: a level holds less than its min_utilization",
    "analog: the mapping breaks a crossbar rule (rows must reduce into one output, columns must share "
    "the row input, the crossbar keeps only the weights, programmed weights stay put)",
    "sparse format: the mapping needs more format ranks than declared, a pre-tiled format does not match "
    "the child level's, or a gating/skipping target has no storage level",
    "metadata capacity: format metadata kept at a level exceeds its metadata storage",
    "sparse unsupported: (de)compression between levels that do not support it, or a compressed tile "
    "below an uncompressed one",
    "links: more distinct link-transfer translations at one level than the kernel counts exactly (3); "
    "evaluate it without links (compile_spec(links=False)) or with jaxloop.reference",
)
FLAG_MASKS = tuple(1 << i for i in range(len(REASONS)))
FLAG_MEANINGS = ("capacity", "fanout_x", "fanout_y", "factors", "keep", "min_utilization", "analog",
                 "sparse_format", "metadata_capacity", "sparse_unsupported", "links")


def status(arr, temporal, spatial_x, spatial_y, keep, tile, kept_where_not_keepable=False):
    """int64 bit field [B]; 0 means valid."""
    used = jnp.where(keep, tile, 0).sum(axis=2)  # [B, L]
    cap = (used > arr["size"]).any(axis=1)
    fx = (jnp.prod(spatial_x, axis=2) > arr["fanout_x"]).any(axis=1)
    fy = (jnp.prod(spatial_y, axis=2) > arr["fanout_y"]).any(axis=1)
    prod = jnp.prod(temporal * spatial_x * spatial_y, axis=1)  # [B, D]
    fac = (prod != arr["bounds"]).any(axis=1)
    kept = (~keep.any(axis=1)).any(axis=1) | kept_where_not_keepable
    minu = (used < arr["min_util"] * jnp.where(jnp.isinf(arr["size"]), 0, arr["size"])).any(axis=1)
    bits = [cap, fx, fy, fac, kept, minu]
    return sum(b.astype(jnp.int64) << i for i, b in enumerate(bits))


def reasons(code):
    """Readable reasons for one status code."""
    return [r for i, r in enumerate(REASONS) if int(code) >> i & 1]
