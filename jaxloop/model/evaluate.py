"""The one jit boundary: evaluate(static, arrays, batch) -> Stats, batched over mappings."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.mapspace import MappingBatch
from jaxloop.model import access, converters, energy, fold, latency, links, sparse, status, tiling


class Stats(NamedTuple):
    """Per mapping b; L storage levels innermost first; T dataspaces. Counts are per instance."""

    reads: jax.Array  # [B, L, T]
    fills: jax.Array  # [B, L, T]
    updates: jax.Array  # [B, L, T]
    tile: jax.Array  # [B, L, T] utilized capacity (words)
    partition: jax.Array  # [B, L, T]
    instances: jax.Array  # [B, L] utilized instances
    energy_ds: jax.Array  # [B, L, T] pJ, all instances, without leakage
    leak: jax.Array  # [B, L] pJ
    level_cycles: jax.Array  # [B, L]
    computes: jax.Array  # [B] MACs
    mac_instances: jax.Array  # [B] utilized MAC instances
    compute_energy: jax.Array  # [B] pJ
    energy: jax.Array  # [B] pJ total
    cycles: jax.Array  # [B]
    utilization: jax.Array  # [B]
    status: jax.Array  # [B] bit flags, 0 = valid
    converter_counts: jax.Array  # [B, len(converters.COUNTS)] analog crossbar actions (zeros for digital designs)
    converter_energy: jax.Array  # [B, len(converters.ENERGY_KINDS)] pJ, all crossbars (included in energy)
    # Sparseloop terms (jaxloop/model/sparse.py). reads/fills/updates and computes above stay the
    # algorithmic (dense) counts; energy, cycles and utilization above include the sparse effects.
    # Without sparse_optimizations: actual = algorithmic, gated/skipped/metadata = 0.
    actual_reads: jax.Array = None  # [B, L, T] random (effectual) reads, per instance
    gated_reads: jax.Array = None  # [B, L, T]
    skipped_reads: jax.Array = None  # [B, L, T]
    actual_fills: jax.Array = None  # [B, L, T]
    gated_fills: jax.Array = None  # [B, L, T]
    skipped_fills: jax.Array = None  # [B, L, T]
    actual_updates: jax.Array = None  # [B, L, T]
    gated_updates: jax.Array = None  # [B, L, T]
    skipped_updates: jax.Array = None  # [B, L, T]
    metadata_reads: jax.Array = None  # [B, L, T] actual format units read (metadata + payload, all ranks)
    metadata_fills: jax.Array = None  # [B, L, T]
    metadata_updates: jax.Array = None  # [B, L, T]
    format_accesses: jax.Array = None  # [B, L, T, 9, R, 2] (random/gated/skipped x read/fill/update), rank, (md, payload)
    data_capacity: jax.Array = None  # [B, L, T] utilized data capacity (compressed tiles at max occupancy)
    format_capacity: jax.Array = None  # [B, L, T, R, 2] metadata / payload units at max occupancy
    avg_instances: jax.Array = None  # [B, L, T] utilized instances, average (empty tiles, spatial skipping)
    max_instances: jax.Array = None  # [B, L, T] utilized instances, max (spatial skipping reduces them)
    avg_mac_instances: jax.Array = None  # [B] utilized MAC instances, average (spatial skipping; truncated)
    algorithmic_computes: jax.Array = None  # [B]
    actual_computes: jax.Array = None  # [B] random (effectual) computes
    gated_computes: jax.Array = None  # [B]
    skipped_computes: jax.Array = None  # [B]
    compute_cycles: jax.Array = None  # [B]

    @property
    def valid(self):
        return self.status == 0

    @property
    def level_energy(self):
        return self.energy_ds.sum(axis=-1) + self.leak

    @property
    def edp(self):
        return self.energy * 1e-12 * self.cycles

    @property
    def last_level_accesses(self):
        top = self.instances[..., -1:, None] * (self.reads + self.fills + self.updates)[..., -1:, :]
        return top.sum(axis=(-1, -2))


def _evaluate(static, arr, batch):
    # Counts as float64: exact below 2**53, and vectorized on CPUs (int64 multiply is not on AVX2).
    temporal = batch.temporal.astype(jnp.float64)
    sx, sy = batch.spatial_x.astype(jnp.float64), batch.spatial_y.astype(jnp.float64)
    spatial = sx * sy
    perm = batch.perm.astype(jnp.int32)
    keepable = jnp.asarray(static.keepable)[None]
    asked = batch.keep.astype(bool)
    keep = asked & keepable
    B, L, D = temporal.shape
    # Tiles, accesses, cycles and energy run batch-last ([L, D, B], [L, T, B]): contiguous vector
    # steps on CPUs. The inputs are transposed once, factors as int32 and loop orders as int8
    # (fewer bytes; bounds are below 2**31, larger factors are clipped and flagged by the
    # status), and kept: the barrier stops XLA from re-reading the strided inputs per use.
    # Stats are batch-first.
    clip = lambda x: jnp.minimum(x, 2**31 - 1).astype(jnp.int32)  # noqa: E731
    order = batch.perm.astype(jnp.int8 if D < 128 else jnp.int32)
    # Dimensions of bound 1 (static.unit_dims) are left out: their loops are all trivial, which
    # the status checks (factors). Loop positions stay those among all D dimensions.
    live = static.live_dims
    kst = static.live()
    t_l, s_l, perm_l, keep_l = jax.lax.optimization_barrier(tuple(
        jnp.stack([x[:, l][:, cols] for l in range(L)]).transpose(0, 2, 1)
        for x, cols in ((clip(batch.temporal), live), (clip(spatial), live), (order, slice(None)),
                        (keep, slice(None)))))
    position = access.inverse(perm_l, 1, of=live).astype(jnp.int32)  # each dimension's place in its level's order
    t_l, s_l = t_l.astype(jnp.float64), s_l.astype(jnp.float64)
    E_bnd, E_below, E_sp = tiling.extents(t_l, s_l, axis=0)
    tile = jnp.stack([tiling.footprint(E_bnd, r, axis=1) for r in kst.ranks], axis=1)  # [L, T, B]
    inst_above = fold.product(s_l, 1)  # [L, B] spatial fan-out used at each level
    spread = jnp.stack([tiling.footprint(E_sp, r, axis=1) for r in kst.ranks], axis=1)  # [L, T, B]
    part = tiling.partitions(tile, spread, inst_above)
    reads, fills, updates, t_total = access.accesses(kst, t_l, s_l, position, keep_l,
                                                     E_bnd, E_below, E_sp, tile, part, places=D)
    above = [jnp.ones(B)]  # utilized instances of level l: spatial fan-out used above it
    for l in range(L - 1, 0, -1):
        above.append(above[-1] * inst_above[l])
    instances = jnp.stack(above[::-1])  # [L, B]
    first = lambda x: jnp.moveaxis(x, -1, 0)  # noqa: E731  [..., B] -> [B, ...]
    last = lambda x: jnp.moveaxis(x, 0, -1)  # noqa: E731  [B, ...] -> [..., B]
    links_inexact = jnp.zeros(B, bool)
    if static.links or static.analog is not None:  # these terms run batch-first
        r, f, u = (first(x) for x in (reads, fills, updates))
        if static.links:  # Timeloop's neighbour forwarding between spatial instances
            r, f, u, links_inexact = links.link_transfers(
                static, temporal, sx, sy, perm, keep, first(E_bnd), first(E_below), first(E_sp), first(tile),
                first(part), t_total, first(inst_above), first(instances), r, f, u)
        r, f, u = converters.drop_weight_loading(static, arr, r, f, u)  # analog only
        reads, fills, updates = (last(x) for x in (r, f, u))
    mac_inst = fold.product(inst_above, 0)
    level_cycles, cycles = latency.cycles(arr, t_total, reads, fills, updates)
    conv_counts, conv_energy, analog_cycles, analog_bad = converters.converters(
        static, arr, temporal, sx, sy, keep, instances[0], t_total)
    cycles = jnp.maximum(cycles, analog_cycles)  # crossbar activations take activation_cycles each
    e_ds = energy.storage_energy(arr, reads, fills, updates, instances)
    leak = energy.leakage(arr, cycles, instances)
    computes = t_total * mac_inst
    e_mac = computes * arr["e_compute"]
    total = fold.total(fold.total(e_ds, 1), 0) + fold.total(leak, 0) + e_mac + conv_energy.sum(axis=1)
    util = computes / arr["mac_instances"] / cycles
    not_keepable = [asked[:, l, t] for l, row in enumerate(static.keepable) for t, k in enumerate(row) if not k]
    kept_wrong = fold.any_of(jnp.stack(not_keepable), 0) if not_keepable else False
    code = status.status(arr, t_l, s_l, keep_l, tile, batch.spatial_x, batch.spatial_y, kept_wrong, live,
                         unit_factors=[x[:, :, d] for d in static.unit_dims for x in (batch.temporal, spatial)])
    reads, fills, updates, tile, part, instances = (first(x) for x in (reads, fills, updates, tile, part, instances))
    code = code | (analog_bad.astype(code.dtype) << status.FLAG_MEANINGS.index("analog"))
    code = code | (links_inexact.astype(code.dtype) << status.FLAG_MEANINGS.index("links"))
    st = Stats(reads, fills, updates, tile, part, jnp.where(keep.any(axis=2), instances, 0.0), first(e_ds),
               first(leak), first(level_cycles), computes, mac_inst, e_mac, total, cycles, util, code,
               converter_counts=conv_counts, converter_energy=conv_energy)
    return sparse.extend_stats(static, arr, st, dict(temporal=temporal, spatial=spatial, sx=sx, sy=sy, perm=perm,
                                                     keep=keep, t_total=t_total, instances=instances,
                                                     analog_cycles=analog_cycles, loops=(t_l, s_l, position)))


evaluate = jax.jit(_evaluate, static_argnums=0)
evaluate.__doc__ = "Stats of every mapping in `batch` (a MappingBatch of jnp/np arrays)."


def shard(batch):
    """Place a batch split over all local devices (every CPU core, or the GPUs) along the
    mapping axis; jit then runs one piece per device. The batch size must divide evenly."""
    devices = jax.local_devices()
    if len(devices) == 1 or batch.size % len(devices):
        return MappingBatch(*(jax.device_put(a, devices[0]) for a in batch))
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), ("mapping",)),
                                          jax.sharding.PartitionSpec("mapping"))
    return MappingBatch(*(jax.device_put(a, sharding) for a in batch))


def evaluate_chunked(static, arr, batch, chunk=4096, reduce=None):
    """Evaluate a large batch in fixed-size chunks (static shapes: the last chunk is padded),
    each sharded over all local devices. Small chunks keep the working set in cache on CPUs."""
    B = batch.size
    chunk = chunk * len(jax.local_devices())
    outs = []
    for s in range(0, B, chunk):
        part = batch.take(np.arange(s, min(s + chunk, B)))
        pad = chunk - part.size if B > chunk else 0
        if pad:
            part = MappingBatch(*(np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in part))
        st = evaluate(static, arr, shard(part))
        st = jax.tree_util.tree_map(lambda x: np.asarray(x)[: part.size - pad] if x.ndim else x, st)
        outs.append(st if reduce is None else reduce(st))
    if reduce is not None:
        return outs
    return Stats(*(np.concatenate([getattr(o, f) for o in outs]) for f in Stats._fields))




def evaluate_one(spec, table, mapping=None):
    """Stats of one mapping (the spec's own by default) as a batch of one."""
    from jaxloop.compiler import compile_spec

    static, arr = compile_spec(spec, table)
    batch = MappingBatch.from_mappings([mapping if mapping is not None else spec.mapping])
    return static, evaluate(static, arr, batch)
