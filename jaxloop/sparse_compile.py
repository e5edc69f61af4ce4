"""Compile the sparse part of a spec: static structure (SparseStatic) + traced arrays. NumPy only.

Called by `jaxloop.compiler.compile_spec`. Returns (None, {}) for a dense run: Timeloop runs
no sparse analysis when no optimization is declared, even if densities are given.
"""

import numpy as np

from jaxloop.errors import SpecError
from jaxloop.mapspace import prime_factors
from jaxloop.model.sparse import ACTIONS, VECTOR_WIDTH_THRESHOLDS, SparseStatic
from jaxloop.spec.sparse import parse_sparse


def _banded_density(wl, t, band_width):
    ds = wl.dataspaces[t]
    ranks = [r for r in ds.ranks if r]
    if len(ranks) != 2 or any(len(r) != 1 for r in ranks):
        raise SpecError(f"problem.instance.densities.{ds.name}: the banded model needs a 2-D tensor with "
                        "one dimension per rank")
    n1, n2 = (wl.bounds[r[0][0]] for r in ranks)
    if n1 != n2:
        raise SpecError(f"problem.instance.densities.{ds.name}: the banded model needs a square tensor, "
                        f"got {n1} x {n2}")
    nnz = n1 + 2 * sum(max(n1 - u, 0) for u in range(1, band_width + 1))
    return nnz / (n1 * n1)


def compile_sparse(spec, table, arrays, charge_skipped_metadata_as_actual=False):
    """(SparseStatic or None, arrays dict with 'sp_*' entries)."""
    sp = parse_sparse(spec)
    if not sp.active:
        return None, {}
    wl, arch = spec.workload, spec.arch
    L, T = len(arch.levels), len(wl.dataspaces)
    R = max([len(f.ranks) for f in sp.formats.values()] + [1])
    formats = tuple(sorted((l, t, f.inner_to_outer, tuple((r.format, r.flatten) for r in f.ranks))
                           for (l, t), f in sp.formats.items()))
    safs = tuple((s.level, s.kind, s.options) for kind in ("gating", "skipping")
                 for s in sorted((s for s in sp.safs if s.kind == kind), key=lambda s: s.level))
    spatial_safs = tuple((s.level, s.options[0][0], s.options[0][1][0]) for s in sp.safs
                         if s.kind == "skipping_spatial")
    kinds, dens = [], []
    for t, d in enumerate(sp.densities):
        if d.kind == "banded":
            kinds.append("banded")
            dens.append(_banded_density(wl, t, d.band_width))
        else:
            kinds.append(d.kind)
            dens.append(d.density)
    static = SparseStatic(
        fanout=tuple(arch.fanout(i)[0] * arch.fanout(i)[1] > 1 for i in range(L)),
        density_kind=tuple(kinds), formats=formats, R=R, safs=safs, spatial_safs=spatial_safs,
        compute_gating=sp.compute_gating, compute_skipping=sp.compute_skipping,
        decompression_supported=sp.decompression_supported, compression_supported=sp.compression_supported,
        prime_factors=tuple(sum(e for _, e in prime_factors(int(b))) for b in wl.bounds))
    md_bits = np.zeros((L, T, R))
    pl_bits = np.zeros((L, T, R))
    for (l, t), f in sp.formats.items():
        for r, rf in enumerate(f.ranks):
            md_bits[l, t, r] = rf.metadata_word_bits
            pl_bits[l, t, r] = rf.payload_word_bits
    attr = [lv.attributes for lv in arch.levels]
    md_width = np.array([float(a.get("metadata_storage_width") or 0) for a in attr])
    md_depth = np.array([float(a.get("metadata_storage_depth") or 0) for a in attr])
    mb = np.array([lv.multiple_buffering for lv in arch.levels])
    thr = np.zeros((L, 10))
    for l, lv in enumerate(arch.levels):
        if lv.block_size in VECTOR_WIDTH_THRESHOLDS:
            thr[l] = VECTOR_WIDTH_THRESHOLDS[lv.block_size]
    e = np.zeros((L, len(ACTIONS)))
    for l, lv in enumerate(arch.levels):
        for a, name in enumerate(ACTIONS):
            if name in ("random_read", "random_fill", "random_update"):
                e[l, a] = arrays[f"e_{name.split('_')[1]}"][l]
            else:
                v = table.op_energy(lv.name, name)
                e[l, a] = 0.0 if v is None else v
    comp = arch.compute.name
    ec = [float(arrays["e_compute"])]
    for op in ("gated_compute", "skipped_compute"):
        v = table.op_energy(comp, op)
        ec.append(ec[0] if v is None else v)
    out = {
        "sp_density": np.array(dens, np.float64),
        # the workload tensor's size unless the spec names one: static, so the density models'
        # parameters are scalars whatever the batch
        "sp_tensor_size": np.array([float(d.tensor_size or wl.tensor_size(t)) for t, d in enumerate(sp.densities)],
                                   np.float64),
        "sp_md_bits": md_bits, "sp_pl_bits": pl_bits,
        "sp_md_width": md_width,
        "sp_md_default_bits": np.array([float(a.get("metadata_datawidth", a.get("metadata_word_bits", 0)) or 0)
                                        for a in attr]),
        "sp_word_bits": np.array([float(lv.word_bits) for lv in arch.levels]),
        "sp_md_capacity_bits": np.floor(md_depth * md_width / mb),
        "sp_vw_threshold": thr,
        "sp_e": e,
        "sp_e_compute": np.array(ec, np.float64),
        "sp_charge_skipped_metadata_as_actual": np.float64(1.0 if charge_skipped_metadata_as_actual else 0.0),
    }
    return static, out
