"""Validity as bit flags with readable reasons (one mapping can fail several ways at once)."""

import jax.numpy as jnp
import numpy as np

from jaxloop.model import fold

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


def status(arr, temporal, spatial, keep, tile, spatial_x, spatial_y, kept_where_not_keepable=False, live=None,
           unit_factors=()):
    """int64 bit field [B]; 0 means valid. Batch-last temporal and spatial (X times Y) [L, D, B],
    keep and tile [L, T, B]; spatial_x and spatial_y as the batch holds them, [B, L, D]. `live`:
    the dimensions temporal and spatial hold (default all), `unit_factors`: the factors [B, L]
    of the others, whose bound is 1."""
    used = fold.total(jnp.where(keep, tile, 0), 1)  # [L, B]
    size = arr["size"][:, None]
    cap = fold.any_of(used > size, 0)
    fx = fold.any_of(fold.product(spatial_x.astype(jnp.float64), 2) > arr["fanout_x"], 1)
    fy = fold.any_of(fold.product(spatial_y.astype(jnp.float64), 2) > arr["fanout_y"], 1)
    prod = fold.product(temporal * spatial, 0)  # [D, B]
    bounds = arr["bounds"] if live is None else arr["bounds"][np.asarray(live)]
    fac = fold.any_of(prod != bounds[:, None], 0)
    for f in unit_factors:
        fac = fac | fold.any_of(f != 1, 1)
    kept = fold.any_of(~fold.any_of(keep, 0), 0) | kept_where_not_keepable
    minu = fold.any_of(used < arr["min_util"][:, None] * jnp.where(jnp.isinf(size), 0, size), 0)
    bits = [cap, fx, fy, fac, kept, minu]
    return sum(b.astype(jnp.int64) << i for i, b in enumerate(bits))


def reasons(code):
    """Readable reasons for one status code."""
    return [r for i, r in enumerate(REASONS) if int(code) >> i & 1]
