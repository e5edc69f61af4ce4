"""Spec -> (small hashable static config, pytree of numeric arrays). NumPy only, done once.

Everything numeric (bounds, sizes, bandwidths, energies) is a traced array, so sweeping
them never recompiles; only the shape of the problem (levels, dims, projections) is static.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from jaxloop.errors import SpecError

OPS = ("read", "fill", "update")


@dataclass(frozen=True)
class Static:
    """Hashable shape of one (architecture, workload) pair: the jit cache key."""

    L: int  # storage levels
    D: int  # dimensions
    ranks: tuple  # per dataspace: tuple of ranks, each a tuple of (dim, |coefficient|)
    read_write: tuple  # per dataspace: bool
    level_names: tuple
    ds_names: tuple
    dim_names: tuple
    keepable: tuple = ()  # [L][T]: can level l keep dataspace t? False at timeloopfe's dummy_storage
    # levels (they only carry a spatial fan-out) and where mapspace constraints force a bypass.
    analog: object = None  # jaxloop.model.converters.AnalogStatic for an analog crossbar design, else None
    sparse: object = None  # jaxloop.model.sparse.SparseStatic when sparse_optimizations are declared, else None
    fanout: tuple = ()  # [L] physical (X, Y) fan-out below each level: the mesh of link transfers (empty
    # without links, so designs differing only in their meshes share one compiled kernel)
    links: bool = True  # model Timeloop's link transfers (its default; costs O(fan-out^2) per mapping)
    unit_dims: tuple = ()  # dimensions of bound 1 outside sliding ranks: the dense kernel leaves them out
    # (their factors can only be 1; the status checks that they are)

    @property
    def live_dims(self):
        """The dimensions the dense kernel holds (all but `unit_dims`)."""
        return [d for d in range(self.D) if d not in self.unit_dims]

    def live(self):
        """The kernel's view without `unit_dims`: dimensions renumbered, ranks remapped."""
        if not self.unit_dims:
            return self
        keep = self.live_dims
        new = {d: i for i, d in enumerate(keep)}
        ranks = tuple(tuple(tuple((new[d], c) for d, c in r if d in new) for r in rs) for rs in self.ranks)
        ranks = tuple(tuple(r for r in rs if r) for rs in ranks)
        return dataclasses.replace(self, D=len(keep), ranks=ranks, dim_names=tuple(self.dim_names[d] for d in keep),
                                   unit_dims=())

    @property
    def T(self):
        return len(self.ranks)

    def sliding(self, t):
        return any(len(r) > 1 for r in self.ranks[t])

    def relevant(self, t):
        rel = [False] * self.D
        for r in self.ranks[t]:
            for d, c in r:
                rel[d] = rel[d] or c != 0
        return tuple(rel)


def compile_spec(spec, table, keepable=None, links=True):
    """(Static, arrays) for the kernel. `table` is an EnergyTable covering every level.

    `keepable` ([L][T] bools) narrows where dataspaces may be kept, e.g. from mapspace
    constraints; the kernel then skips work for the other levels and flags mappings that keep
    a dataspace there (status bit "keep"). `links=False` leaves out Timeloop's link transfers
    (jaxloop/model/links.py), which cost O(fan-out^2) work per mapping: the mapper searches
    without them by default and evaluates what it reports with them."""
    wl, arch = spec.workload, spec.arch
    ranks = []
    for ds in wl.dataspaces:
        rr = tuple(tuple((d, abs(c)) for d, c in r if c != 0) for r in ds.ranks)
        for r in rr:
            if len(r) > 2:
                raise SpecError(f"dataspace {ds.name}: a rank summing {len(r)} dimensions is not supported "
                                "(at most two, e.g. W = Wstride*P + Wdilation*R)")
            if len(r) == 2 and r[0][0] == r[1][0]:
                raise SpecError(f"dataspace {ds.name}: a rank repeats dimension {wl.dims[r[0][0]]}")
        dims_seen = [d for r in rr for d, _ in r]
        if len(dims_seen) != len(set(dims_seen)):
            raise SpecError(f"dataspace {ds.name}: a dimension appears in two ranks; not supported")
        ranks.append(rr)
    static = Static(len(arch.levels), len(wl.dims), tuple(ranks), tuple(ds.read_write for ds in wl.dataspaces),
                    arch.names, tuple(ds.name for ds in wl.dataspaces), wl.dims,
                    _keepable(arch, len(wl.dataspaces), keepable),
                    fanout=tuple(arch.fanout(i) for i in range(len(arch.levels))) if links else (),
                    links=bool(links))

    missing = []

    def energy(name, op, cls):
        e = table.op_energy(name, op)
        if e is None:
            if "dummy" in cls.lower() or (op == "leak"):
                return 0.0
            missing.append(f"{name}.{op}")
            return 0.0
        return e

    lv = arch.levels
    arrays = {
        "bounds": np.array(wl.bounds, np.int64),
        "size": np.array([x.effective_size for x in lv], np.float64),
        "min_util": np.array([x.min_utilization for x in lv], np.float64),
        "block": np.array([x.block_size for x in lv], np.float64),
        "cluster": np.array([x.cluster_size for x in lv], np.float64),
        "instances": np.array([x.instances for x in lv], np.float64),
        "fanout_x": np.array([arch.fanout(i)[0] for i in range(len(lv))], np.int64),
        "fanout_y": np.array([arch.fanout(i)[1] for i in range(len(lv))], np.int64),
        "read_bw": np.array([x.read_bandwidth for x in lv], np.float64),
        "write_bw": np.array([x.write_bandwidth for x in lv], np.float64),
        "shared_bw": np.array([x.shared_bandwidth for x in lv], np.float64),
        "mac_instances": np.float64(arch.compute.instances),
        "e_compute": np.float64(energy(arch.compute.name, "compute", arch.compute.cls)),
        "area": np.array([table.area.get(x.name, 0.0) for x in lv], np.float64),
        "area_compute": np.float64(table.area.get(arch.compute.name, 0.0)),
    }
    for op in (*OPS, "leak"):
        arrays[f"e_{op}"] = np.array([energy(x.name, op, x.cls) for x in lv], np.float64)
    if missing:
        raise SpecError("no energy for " + ", ".join(missing) + " in the energy table: give --ert ERT.yaml "
                        "with these components, or let jaxloop estimate them (omit --ert)")
    if getattr(spec, "analog", None) is not None:  # crossbar converter terms (jaxloop/model/converters.py)
        from jaxloop.model.converters import compile_analog

        static, arrays = compile_analog(spec, table, static, arrays)
    from jaxloop.sparse_compile import compile_sparse  # Sparseloop terms (jaxloop/model/sparse.py)

    sparse, sparse_arrays = compile_sparse(spec, table, arrays)
    if sparse is not None:
        static = dataclasses.replace(static, sparse=sparse)
        arrays.update(sparse_arrays)
    if not static.links and static.analog is None and static.sparse is None:  # those terms use every dimension
        sliding = {d for rs in static.ranks for r in rs if len(r) > 1 for d, _ in r}
        unit = tuple(d for d, b in enumerate(wl.bounds) if int(b) == 1 and d not in sliding)
        static = dataclasses.replace(static, unit_dims=unit[1:] if len(unit) == static.D else unit)  # keep one
    return static, arrays


def _keepable(arch, T, given):
    L = len(arch.levels)
    out = [[("dummy" not in lv.cls.lower()) or l == L - 1 for _ in range(T)] for l, lv in enumerate(arch.levels)]
    if given is not None:
        given = np.asarray(given, bool)
        if given.shape != (L, T):
            raise SpecError(f"keepable must be [levels={L}, dataspaces={T}], got {given.shape}")
        out = [[a and bool(g) for a, g in zip(row, grow)] for row, grow in zip(out, given)]
    out[-1] = [True] * T  # the backing store keeps everything
    return tuple(tuple(r) for r in out)
