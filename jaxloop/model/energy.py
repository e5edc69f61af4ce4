"""Energy = action counts x ERT, with Timeloop's per-instance block rounding, plus leakage."""

import jax.numpy as jnp


def storage_energy(arr, reads, fills, updates, instances):
    """Energy per level and dataspace [B, L, T], all instances: ceil(count/block) vector accesses.

    Instances sharing one wide array (cluster_size > 1) pay one access per used cluster:
    Timeloop divides by cluster utilization = used / min(used, instances / cluster_size).
    """
    blk = arr["block"][None, :, None]
    per_instance = (jnp.ceil(reads / blk) * arr["e_read"][None, :, None]
                    + jnp.ceil(fills / blk) * arr["e_fill"][None, :, None]
                    + jnp.ceil(updates / blk) * arr["e_update"][None, :, None])
    charged = jnp.minimum(instances, arr["instances"] / arr["cluster"])
    return per_instance * charged[:, :, None]


def leakage(arr, total_cycles, instances):
    """Leak energy per level [B, L]: per-instance leak x cycles x utilized instances (at least 1)."""
    return arr["e_leak"][None, :] * total_cycles[:, None] * jnp.maximum(instances, 1.0)


def area(arr):
    """Total area in um^2: per-instance area (ART) x hardware instances, storage and compute.
    Mapping-independent; Timeloop prints the per-instance figures per level."""
    return float((arr["area"] * arr["instances"]).sum() + arr["area_compute"] * arr["mac_instances"])
