"""Energy = action counts x ERT, with Timeloop's per-instance block rounding, plus leakage."""

import jax.numpy as jnp


def storage_energy(arr, reads, fills, updates, instances):
    """Energy per level and dataspace [L, T, B] (counts [L, T, B], instances [L, B]), all
    instances: ceil(count/block) vector accesses.

    Instances sharing one wide array (cluster_size > 1) pay one access per used cluster:
    Timeloop divides by cluster utilization = used / min(used, instances / cluster_size).
    """
    col = lambda x: x[:, None, None]  # noqa: E731  per level
    blk = col(arr["block"])
    per_instance = (jnp.ceil(reads / blk) * col(arr["e_read"]) + jnp.ceil(fills / blk) * col(arr["e_fill"])
                    + jnp.ceil(updates / blk) * col(arr["e_update"]))
    charged = jnp.minimum(instances, (arr["instances"] / arr["cluster"])[:, None])
    return per_instance * charged[:, None]


def leakage(arr, total_cycles, instances):
    """Leak energy per level [L, B]: per-instance leak x cycles [B] x utilized instances [L, B] (at least 1)."""
    return arr["e_leak"][:, None] * total_cycles[None, :] * jnp.maximum(instances, 1.0)


def area(arr):
    """Total area in um^2: per-instance area (ART) x hardware instances, storage and compute.
    Mapping-independent; Timeloop prints the per-instance figures per level."""
    return float((arr["area"] * arr["instances"]).sum() + arr["area_compute"] * arr["mac_instances"])
