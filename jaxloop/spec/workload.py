"""Workload: named dimensions with bounds, and dataspaces as affine projections of them.

A dataspace rank is a sum of terms coefficient * dimension (Timeloop's projection form B);
`Inputs` of a convolution has the rank W = Wstride*P + Wdilation*R, a *sliding* rank.
"""

from dataclasses import dataclass
from math import prod

from jaxloop.errors import Problems


@dataclass(frozen=True)
class DataSpace:
    name: str
    ranks: tuple  # tuple of ranks; a rank is a tuple of (dim_index, coefficient) terms
    read_write: bool = False
    density: float = 1.0

    @property
    def sliding(self):
        """True when some rank sums two or more dimensions (a sliding window)."""
        return any(len(r) > 1 for r in self.ranks)

    def relevant(self, d):
        return any(dd == d for r in self.ranks for dd, c in r if c != 0)


@dataclass(frozen=True)
class Workload:
    name: str
    dims: tuple  # dimension names
    bounds: tuple  # one bound per dimension
    dataspaces: tuple  # DataSpace, read-only inputs first as written, one read-write output
    coefficients: tuple = ()  # (name, value) pairs after instance overrides

    @property
    def macs(self):
        return prod(self.bounds)

    def dim_index(self, name):
        return self.dims.index(name)

    def ds_index(self, name):
        return [t.name for t in self.dataspaces].index(name)

    def tensor_size(self, t):
        """Footprint of the whole tensor (bounding box, Timeloop's AAHR rule)."""
        ds = self.dataspaces[t]
        return prod(1 + sum(abs(c) * (self.bounds[d] - 1) for d, c in r) for r in ds.ranks)


def parse_problem(problem, where):
    """Timeloop `problem:` section (shape + instance) -> Workload. `where(*keys)` names locations."""
    p = Problems()
    if not isinstance(problem, dict):
        p.add(where("problem"), "expected a mapping with 'shape' and 'instance'")
        p.raise_if_any()
    shape, instance = problem.get("shape"), problem.get("instance")
    if not isinstance(shape, dict):
        p.add(where("problem"), "missing 'shape' (dimensions, data_spaces, coefficients)")
    if not isinstance(instance, dict):
        p.add(where("problem"), "missing 'instance' (a bound for every dimension)")
    p.raise_if_any()

    dims = shape.get("dimensions")
    if not isinstance(dims, list) or not dims or not all(isinstance(d, str) for d in dims):
        p.add(where("problem", "shape", "dimensions"), "expected a non-empty list of dimension names")
        p.raise_if_any()
    dims = [str(d) for d in dims]
    if len(set(dims)) != len(dims):
        p.add(where("problem", "shape", "dimensions"), f"duplicate dimension names in {dims}")

    coefs = {}
    for i, c in enumerate(shape.get("coefficients") or []):
        if not isinstance(c, dict) or "name" not in c:
            p.add(where("problem", "shape", "coefficients", i), "expected {name: ..., default: ...}")
            continue
        coefs[str(c["name"])] = c.get("default", 1)
    for k in coefs:
        if k in instance:
            coefs[k] = instance[k]
    for k, v in coefs.items():
        if not isinstance(v, int) or isinstance(v, bool):
            p.add(where("problem", "instance", k), f"coefficient {k} must be an integer, got {v!r}")

    bounds = []
    for d in dims:
        b = instance.get(d)
        if b is None:
            p.add(where("problem", "instance"), f"missing bound for dimension {d}")
            bounds.append(1)
        elif not isinstance(b, int) or isinstance(b, bool) or not 1 <= b < 2**31:
            p.add(where("problem", "instance", d), f"bound of {d} must be a positive integer below 2**31, got {b!r}")
            bounds.append(1)
        else:
            bounds.append(int(b))
    # Extra instance keys (H, W, Hpad, ... written by front ends) are ignored, as Timeloop does.

    densities = instance.get("densities") or {}
    spaces = []
    raw = shape.get("data_spaces")
    if not isinstance(raw, list) or not raw:
        p.add(where("problem", "shape", "data_spaces"), "expected a non-empty list of dataspaces")
        p.raise_if_any()
    for i, ds in enumerate(raw):
        at = ("problem", "shape", "data_spaces", i)
        if not isinstance(ds, dict) or "name" not in ds or "projection" not in ds:
            p.add(where(*at), "expected {name, projection, read_write}")
            continue
        ranks = []
        proj = ds["projection"]
        if not isinstance(proj, list):
            p.add(where(*at, "projection"), "expected a list of ranks")
            continue
        for r, rank in enumerate(proj):
            terms = []
            items = [[rank]] if isinstance(rank, str) else rank
            if not isinstance(items, list):
                p.add(where(*at, "projection", r), "expected a dimension name or a list of [dim] / [dim, coefficient] terms")
                continue
            for term in items:
                term = [term] if isinstance(term, str) else term
                if not isinstance(term, list) or not 1 <= len(term) <= 2:
                    p.add(where(*at, "projection", r), f"bad term {term!r}: expected [dim] or [dim, coefficient]")
                    continue
                name = str(term[0])
                if name not in dims:
                    p.add(where(*at, "projection", r), f"unknown dimension {name!r} (dimensions are {dims})")
                    continue
                c = 1
                if len(term) == 2:
                    c = term[1]
                    if isinstance(c, str):
                        if c not in coefs:
                            p.add(where(*at, "projection", r), f"unknown coefficient {c!r}")
                            continue
                        c = coefs[c]
                terms.append((dims.index(name), int(c)))
            ranks.append(tuple(terms))
        dens = densities.get(ds["name"], 1.0)
        if isinstance(dens, dict):  # Sparseloop density models: dense-equivalent is the nominal density
            dens = dens.get("density", 1.0)
        spaces.append(DataSpace(str(ds["name"]), tuple(ranks), bool(ds.get("read_write", False)), float(dens)))
    if sum(ds.read_write for ds in spaces) != 1 and spaces:
        p.add(where("problem", "shape", "data_spaces"), "exactly one dataspace must have read_write: true (the output)")
    p.raise_if_any()
    return Workload(str(shape.get("name", "problem")), tuple(dims), tuple(bounds), tuple(spaces),
                    tuple(sorted(coefs.items())))


def conv2d(C, M, P, Q, R, S, N=1, Wstride=1, Hstride=1, Wdilation=1, Hdilation=1, name="conv2d"):
    """Timeloop's CNN_Layer shape (dims C M R S N P Q) with the given instance."""
    dims = ("C", "M", "R", "S", "N", "P", "Q")
    d = {n: i for i, n in enumerate(dims)}
    spaces = (
        DataSpace("Weights", (((d["C"], 1),), ((d["M"], 1),), ((d["R"], 1),), ((d["S"], 1),))),
        DataSpace("Inputs", (((d["N"], 1),), ((d["C"], 1),),
                             ((d["R"], Wdilation), (d["P"], Wstride)),
                             ((d["S"], Hdilation), (d["Q"], Hstride)))),
        DataSpace("Outputs", (((d["N"], 1),), ((d["M"], 1),), ((d["Q"], 1),), ((d["P"], 1),)), read_write=True),
    )
    coefs = (("Hdilation", Hdilation), ("Hstride", Hstride), ("Wdilation", Wdilation), ("Wstride", Wstride))
    return Workload(name, dims, (C, M, R, S, N, P, Q), spaces, coefs)
