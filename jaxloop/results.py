"""Results as one written schema: `xarray.Dataset` in memory, HDF5 (h5netcdf) on disk.

    ds = to_dataset(spec, static, stats, batch, table=table)
    write_dataset(ds, "results.h5")              # atomic: temp file + os.replace
    ds = read_dataset("results.h5")
    best = int(ds.energy.where(ds.status == 0).argmin("mapping"))
    mapping = dataset_to_batch(ds).mapping(best)  # back to a Mapping, exactly

The schema (dimensions, variables, units, attributes) is written down in docs/results.md;
`SCHEMA` names it and is stored in every file. Whole networks: `concat_layers` stacks one
dataset per layer along `layer` and adds network totals; `layer_dataset` takes one back out.
"""

import datetime
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from jaxloop.energy.ert import component_name
from jaxloop.mapspace import MappingBatch
from jaxloop.model.status import FLAG_MASKS, FLAG_MEANINGS

SCHEMA = "jaxloop-results/1"
ACTIONS = ("read", "fill", "update")
ABSENT = np.uint32(1 << 31)  # status bit of padding rows in a network dataset (no mapping there)
STATUS_MASKS = np.array([*FLAG_MASKS, ABSENT], np.uint32)
STATUS_MEANINGS = " ".join([*FLAG_MEANINGS, "absent"])
MAPPING_VARS = ("temporal", "spatial_x", "spatial_y", "perm", "keep")
_FILL = {"temporal": 1, "spatial_x": 1, "spatial_y": 1, "perm": -1, "keep": False, "status": ABSENT,
         "mapspace_index": -1}


def _yaml_text(obj):
    from ruamel.yaml import YAML

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    buf = io.StringIO()
    y.dump(obj, buf)
    return buf.getvalue()


def _legal_attrs(attrs):
    """netCDF-legal attributes: str, numbers, or lists of these. Dicts (and lists of dicts)
    become YAML text, bools become 0/1, None is dropped."""
    out = {}
    for k, v in (attrs or {}).items():
        if v is None:
            continue
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        elif isinstance(v, dict) or (isinstance(v, (list, tuple)) and any(isinstance(x, (dict, list, tuple))
                                                                             for x in v)):
            v = _yaml_text(v)
        elif isinstance(v, Path):
            v = str(v)
        elif isinstance(v, (list, tuple)):
            v = [str(x) if isinstance(x, Path) else x for x in v]
            if not v or any(x is None for x in v):
                v = _yaml_text(list(v))
        out[str(k)] = v
    return out


def provenance():
    """Version attributes recorded in every results file."""
    import jax

    import jaxloop

    return {"jaxloop_version": jaxloop.__version__, "jax_version": jax.__version__,
            "numpy_version": np.__version__, "xarray_version": xr.__version__}


def _table_attrs(table):
    if table is None:
        return {"energy_table": "", "energy_table_source": "not recorded"}
    return {"energy_table": _yaml_text({c: {a: float(e) for a, e in acts.items()} for c, acts in table.energy.items()}),
            "energy_table_source": _yaml_text({c: str(s) for c, s in table.source.items()}) if table.source
            else "not recorded",
            "area_table": _yaml_text({c: float(a) for c, a in table.area.items()}) if table.area else ""}


def _int(a):
    a = np.asarray(a)
    return a.astype(np.int32) if a.size == 0 or (a.min() >= -2**31 and a.max() < 2**31) else a.astype(np.int64)


def to_dataset(spec, static, stats, batch, attrs=None, *, table=None, index=None):
    """One dataset for B evaluated mappings: every Stats field under the schema's names, plus the
    mapping tensors. `table` (an EnergyTable) records the energies used and where they came from;
    `index` ([B] ints, e.g. mapspace indices) is kept as the `mapspace_index` coordinate."""
    s = {f: np.asarray(getattr(stats, f)) for f in stats._fields}
    B = s["energy"].shape[0]
    if batch.size != B:
        raise ValueError(f"batch has {batch.size} mappings but stats have {B}")
    L, T, D = len(static.level_names), len(static.ds_names), len(static.dim_names)
    m, lv, ds, dm = "mapping", "level", "dataspace", "dim"

    def var(dims, data, units, long_name, **extra):
        return xr.Variable(dims, data, {"units": units, "long_name": long_name, **extra})

    counts = np.stack([s["reads"], s["fills"], s["updates"]], axis=-1).astype(np.float64)
    top = (s["instances"][:, -1:, None] * counts[:, -1:].sum(-1)).sum(axis=(1, 2))
    level_energy = s["energy_ds"].sum(axis=-1) + s["leak"]
    data = {
        "energy": var((m,), s["energy"], "pJ", "total energy"),
        "cycles": var((m,), s["cycles"], "cycle", "execution cycles"),
        "edp": var((m,), s["energy"] * 1e-12 * s["cycles"], "J*cycle", "energy-delay product"),
        "utilization": var((m,), s["utilization"], "1", "MAC utilization (computes / MAC instances / cycles)"),
        "computes": var((m,), s["computes"], "MAC", "multiply-accumulates"),
        "mac_instances": var((m,), s["mac_instances"], "1", "utilized MAC instances"),
        "compute_energy": var((m,), s["compute_energy"], "pJ", "energy of the MACs"),
        "counts": var((m, lv, ds, "action"), counts, "word", "accesses per instance",
                      comment="Timeloop's Scalar reads/fills/updates (per-instance)"),
        "instances": var((m, lv), s["instances"], "1", "utilized instances (0: level keeps nothing)"),
        "level_energy": var((m, lv), level_energy, "pJ", "energy per level, all instances, with leakage"),
        "dataspace_energy": var((m, lv, ds), s["energy_ds"], "pJ", "energy per level and dataspace, all "
                                "instances, without leakage"),
        "leakage": var((m, lv), s["leak"], "pJ", "leakage energy per level, all utilized instances"),
        "level_cycles": var((m, lv), s["level_cycles"], "cycle", "cycles each level needs (bandwidth)"),
        "utilized_capacity": var((m, lv, ds), s["tile"], "word", "tile held per instance"),
        "partition": var((m, lv, ds), s["partition"], "word", "partition size per instance"),
        "last_level_accesses": var((m,), top, "word", "accesses to the outermost level (DRAM), all instances"),
        "status": var((m,), s["status"].astype(np.uint32), "1", "validity bit flags (0 = valid)",
                      flag_masks=STATUS_MASKS, flag_meanings=STATUS_MEANINGS),
        "temporal": var((m, lv, dm), _int(batch.temporal), "1", "temporal tile factor"),
        "spatial_x": var((m, lv, dm), _int(batch.spatial_x), "1", "spatial factor along X below the level"),
        "spatial_y": var((m, lv, dm), _int(batch.spatial_y), "1", "spatial factor along Y below the level"),
        "perm": var((m, lv, "loop"), np.asarray(batch.perm).astype(np.int8 if D < 128 else np.int32), "1",
                    "temporal loop order, innermost first: index into the dim coordinate"),
        "keep": var((m, lv, ds), np.asarray(batch.keep).astype(bool), "1", "dataspace kept at the level"),
    }
    analog = getattr(static, "analog", None) is not None  # crossbar converter terms (docs/analog.md)
    if analog:
        data["converter_counts"] = var((m, "converter_count"), s["converter_counts"], "1",
                                       "analog crossbar actions, all crossbars")
        data["converter_energy"] = var((m, "converter_kind"), s["converter_energy"], "pJ",
                                       "analog converter and cell energy, all crossbars (in energy)")
    bounds = np.asarray(spec.workload.bounds, np.int64)
    coords = {
        m: (m, np.arange(B, dtype=np.int64)),
        lv: (lv, [component_name(n) for n in static.level_names]),
        ds: (ds, list(static.ds_names)),
        dm: (dm, list(static.dim_names)),
        "action": ("action", list(ACTIONS)),
        "loop": ("loop", np.arange(D, dtype=np.int64)),
        "bound": (dm, bounds, {"units": "1", "long_name": "dimension bound (0: the layer lacks this dimension)"}),
    }
    if analog:
        from jaxloop.model.converters import COUNTS, ENERGY_KINDS

        coords["converter_count"] = ("converter_count", list(COUNTS))
        coords["converter_kind"] = ("converter_kind", list(ENERGY_KINDS))
    if index is not None:
        coords["mapspace_index"] = (m, np.asarray(index, np.int64), {"long_name": "index in the mapspace"})
    assert counts.shape[1:] == (L, T, 3) and batch.temporal.shape[1:] == (L, D)
    g = {"title": "jaxloop results", "schema": SCHEMA, "Conventions": "CF-1.10",
         "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "workload": spec.workload.name, "compute_level": component_name(spec.arch.compute.name),
         "spec": _yaml_text(spec.doc) if spec.doc else "",
         "spec_files": "\n".join(map(str, spec.files)), **provenance(), **_table_attrs(table)}
    g.update(_legal_attrs(attrs))
    return xr.Dataset(data, coords=coords, attrs=g)


def dataset_to_batch(ds):
    """The mapping tensors of a (single-layer) dataset as a MappingBatch; `.mapping(i)` gives
    row i as a Mapping."""
    if "layer" in ds.dims:
        raise ValueError("dataset has a 'layer' dimension: take one layer first with layer_dataset(ds, name)")
    order = ("mapping", "level", "dim")
    return MappingBatch(*(ds[v].transpose(*order).values.astype(np.int64) for v in ("temporal", "spatial_x",
                                                                                   "spatial_y")),
                        ds["perm"].transpose("mapping", "level", "loop").values.astype(np.int64),
                        ds["keep"].transpose("mapping", "level", "dataspace").values.astype(bool))


def write_dataset(ds, path, compress=True):
    """Write `ds` to HDF5 (netCDF-4 via h5netcdf) atomically: a temp file in the same folder,
    flushed to disk, then renamed over `path`, so an interrupted write never leaves a corrupt file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = {}
    if compress:
        for name, v in ds.data_vars.items():
            if v.ndim and v.dtype.kind in "biuf" and v.size > 1024:
                enc[name] = {"zlib": True, "complevel": 4}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=enc, invalid_netcdf=False)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_dataset(path):
    """Read a results file fully into memory (the file is closed on return)."""
    return xr.load_dataset(path, engine="h5netcdf")


# ---------------------------------------------------------------------------------- networks

def _to_dims(ds, dims):
    """`ds` over the dimension list `dims` (a superset of its own): missing dimensions get bound 0
    and factor 1, and perm lists them after the layer's own loops (outermost, trivial)."""
    own = [str(d) for d in ds.dim.values]
    if own == dims:
        return ds
    lut = np.array([dims.index(d) for d in own], np.int64)
    missing = np.array([i for i, d in enumerate(dims) if d not in own], np.int64)
    perm = ds["perm"].values.astype(np.int64)
    pad = np.broadcast_to(missing, (*perm.shape[:-1], missing.size))
    new_perm = np.concatenate([lut[perm], pad], axis=-1)
    out = ds.drop_vars(["perm", "loop"]).reindex(dim=dims, fill_value={"temporal": 1, "spatial_x": 1,
                                                                          "spatial_y": 1, "bound": 0})
    out = out.assign_coords(bound=("dim", np.array([ds.bound.values[own.index(d)] if d in own else 0
                                                    for d in dims], np.int64), ds.bound.attrs))
    out["perm"] = (("mapping", "level", "loop"), new_perm.astype(ds["perm"].dtype), ds["perm"].attrs)
    return out.assign_coords(loop=np.arange(len(dims), dtype=np.int64))


def _pad_mappings(ds, n):
    if ds.sizes["mapping"] == n:
        return ds
    fill = {k: v for k, v in _FILL.items() if k in ds.variables}
    fill.update({k: np.nan for k, v in ds.data_vars.items() if v.dtype.kind == "f"})
    out = ds.reindex(mapping=np.arange(n, dtype=np.int64), fill_value=fill)
    for k in ("temporal", "spatial_x", "spatial_y", "perm", "status", "keep"):
        out[k] = out[k].astype(ds[k].dtype)
    return out


def best_index(ds, objective="energy"):
    """Index of the best valid mapping by `objective` (a [mapping] variable), -1 if none is valid."""
    score = np.where(ds.status.values == 0, ds[objective].values, np.nan)
    if np.isnan(score).all():
        return -1
    return int(np.nanargmin(score))


def concat_layers(datasets, names, repeats=None, objective="energy", attrs=None, choice=None):
    """One dataset per layer (same architecture) -> one network dataset with a `layer` dimension.

    Layers may have different dimension sets (e.g. depthwise next to CNN_Layer): the `dim`
    coordinate becomes their union (a layer's missing dimensions have `bound` 0 and factor 1)
    and mappings are padded to the longest layer (padding rows have the `absent` status bit).
    Adds per layer `repeats` (default 1), `spec` (that layer's input YAML) and `choice` (its best
    valid mapping by `objective`, a [mapping] variable; or `choice`, one row per layer given by the
    caller, e.g. the mapper's best under a lexicographic objective), and the network totals over
    the chosen mappings:
    `total_energy`, `total_cycles`, `total_computes`, `total_edp`, `total_level_energy[level]`
    (layers run one after another; each counted `repeats` times; NaN if a layer has no valid mapping)."""
    names = [str(n) for n in names]
    if len(datasets) != len(names) or not datasets:
        raise ValueError(f"need one name per dataset, got {len(datasets)} datasets and {len(names)} names")
    if len(set(names)) != len(names):
        raise ValueError(f"layer names must be unique: {names}")
    levels = [str(x) for x in datasets[0].level.values]
    for n, d in zip(names, datasets):
        if [str(x) for x in d.level.values] != levels:
            raise ValueError(f"layer {n}: levels {list(d.level.values)} differ from {levels} (one architecture "
                             "per network dataset)")
        if "layer" in d.dims:
            raise ValueError(f"layer {n}: already has a 'layer' dimension")
    dims = []
    for d in datasets:
        dims += [str(x) for x in d.dim.values if str(x) not in dims]
    nmax = max(d.sizes["mapping"] for d in datasets)
    specs = [d.attrs.get("spec", "") for d in datasets]
    workloads = [d.attrs.get("workload", "") for d in datasets]
    parts = [_pad_mappings(_to_dims(d, dims), nmax).copy(deep=False) for d in datasets]
    indexed = any("mapspace_index" in p.coords for p in parts)
    for i, p in enumerate(parts):
        if indexed and "mapspace_index" not in p.coords:
            parts[i] = p = p.assign_coords(mapspace_index=("mapping", np.full(nmax, -1, np.int64)))
        p.attrs = {k: v for k, v in p.attrs.items() if k not in ("spec", "workload", "spec_files", "created")}
    out = xr.concat(parts, dim="layer", data_vars="all", coords="different", compat="equals", join="exact",
                    combine_attrs="drop_conflicts").assign_coords(layer=np.array(names, dtype=str))
    for k in ("temporal", "spatial_x", "spatial_y", "perm", "status", "keep"):
        out[k] = out[k].astype(parts[0][k].dtype)
    out["status"].attrs.update(flag_masks=STATUS_MASKS, flag_meanings=STATUS_MEANINGS)
    reps = np.ones(len(names), np.int64) if repeats is None else np.asarray(repeats, np.int64)
    if reps.shape != (len(names),):
        raise ValueError(f"repeats needs one count per layer ({len(names)}), got {list(reps)}")
    if choice is None:
        choice = [best_index(d, objective) for d in datasets]
    choice = np.asarray(choice, np.int64)
    if choice.shape != (len(names),) or any(c >= d.sizes["mapping"] for c, d in zip(choice, datasets)):
        raise ValueError(f"choice needs one row per layer ({len(names)}) within its mappings, got {list(choice)}")
    out["repeats"] = ("layer", reps, {"units": "1", "long_name": "times the layer occurs in the network"})
    out["spec"] = ("layer", np.array(specs, dtype=object), {"long_name": "input YAML of the layer"})
    out["layer_workload"] = ("layer", np.array(workloads, dtype=object), {"long_name": "workload name"})
    out["choice"] = ("layer", choice, {"long_name": f"best valid mapping by {objective} (-1: none valid)"})
    ok = choice >= 0
    pick = xr.DataArray(np.where(ok, choice, 0), dims="layer")
    chosen = out.isel(mapping=pick)
    w = xr.DataArray(np.where(ok, reps, np.nan), dims="layer")

    def total(v):
        return (chosen[v] * w).sum("layer", skipna=False)

    out["total_energy"] = total("energy").assign_attrs(units="pJ", long_name="network energy (chosen mappings)")
    out["total_cycles"] = total("cycles").assign_attrs(units="cycle", long_name="network cycles (layers in "
                                                       "sequence)")
    out["total_computes"] = total("computes").assign_attrs(units="MAC", long_name="network MACs")
    out["total_edp"] = (out.total_energy * 1e-12 * out.total_cycles).assign_attrs(units="J*cycle",
                                                                                  long_name="network EDP")
    out["total_level_energy"] = total("level_energy").assign_attrs(units="pJ", long_name="network energy per level")
    out.attrs.update({"schema": SCHEMA, "objective": objective,
                      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    out.attrs.update(_legal_attrs(attrs))
    return out


def layer_dataset(ds, name):
    """One layer of a network dataset, as `to_dataset` made it: padding rows and the dimensions
    the layer lacks are removed, its spec and workload are back in the attributes."""
    one = ds.sel(layer=str(name))
    keep_rows = (one.status.values.astype(np.uint32) & ABSENT) == 0
    present = one.bound.values > 0
    union = [str(x) for x in one.dim.values]
    own = [d for d, p in zip(union, present) if p]
    perm = one["perm"].values.astype(np.int64)[keep_rows]
    absent_idx = np.flatnonzero(~present)
    order = np.argsort(np.isin(perm, absent_idx), axis=-1, kind="stable")
    perm = np.take_along_axis(perm, order, axis=-1)[..., :len(own)]
    lut = np.full(len(union), -1, np.int64)
    lut[present] = np.arange(len(own))
    drop = [v for v in ("repeats", "spec", "layer_workload", "choice", "total_energy", "total_cycles",
                        "total_computes", "total_edp", "total_level_energy") if v in one.variables]
    out = one.drop_vars(drop + ["perm", "loop", "layer"]).isel(mapping=np.flatnonzero(keep_rows),
                                                               dim=np.flatnonzero(present))
    if "mapspace_index" in out.coords and (out.mapspace_index.values < 0).all():
        out = out.drop_vars("mapspace_index")
    out = out.assign_coords(mapping=np.arange(out.sizes["mapping"], dtype=np.int64),
                            loop=np.arange(len(own), dtype=np.int64))
    out["perm"] = (("mapping", "level", "loop"), lut[perm].astype(ds["perm"].dtype), ds["perm"].attrs)
    out.attrs = {**ds.attrs, "spec": str(one.spec.values) if "spec" in one else "",
                 "workload": str(one.layer_workload.values) if "layer_workload" in one else ""}
    return out
