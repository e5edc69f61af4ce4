"""One readable mapping: per storage level, temporal and spatial tile factors, loop order, keep.

Arrays are indexed [level, dim] with level 0 innermost. `perm[l]` lists dimension indices
innermost first (Timeloop's permutation strings are innermost first too). Spatial factors
are split into X and Y by Timeloop's `split` rule: the first `split` loops of the spatial
permutation run along X, the rest along Y.
"""

import re
from dataclasses import dataclass

import numpy as np

from jaxloop.errors import Problems


@dataclass
class Mapping:
    temporal: np.ndarray  # [L, D] int
    spatial_x: np.ndarray  # [L, D] int
    spatial_y: np.ndarray  # [L, D] int
    perm: np.ndarray  # [L, D] int, temporal loop order, innermost first
    keep: np.ndarray  # [L, T] bool
    spatial_perm: np.ndarray = None  # [L, D] int, spatial loop order (X loops first), innermost first

    def __post_init__(self):
        if self.spatial_perm is None:
            self.spatial_perm = np.tile(np.arange(self.temporal.shape[1]), (self.temporal.shape[0], 1))

    @property
    def spatial(self):
        return self.spatial_x * self.spatial_y

    def to_yaml_list(self, arch, workload):
        """Timeloop mapping directives (outermost level first), as `timeloop-model` reads them."""
        dims = workload.dims
        out = []
        for lv in reversed(range(len(arch.levels))):
            name = arch.levels[lv].name
            fx = lambda arr: " ".join(f"{dims[d]}={int(arr[d])}" for d in range(len(dims)))  # noqa: E731
            out.append({"target": name, "type": "temporal", "factors": fx(self.temporal[lv]),
                        "permutation": "".join(dims[d] for d in self.perm[lv]) if all(len(x) == 1 for x in dims)
                        else " ".join(dims[d] for d in self.perm[lv])})
            if (self.spatial[lv] > 1).any():
                order = list(self.spatial_perm[lv])
                xs = [d for d in order if self.spatial_x[lv, d] > 1]
                ys = [d for d in order if self.spatial_y[lv, d] > 1 and d not in xs]
                rest = [d for d in order if d not in xs and d not in ys]
                if any(self.spatial_x[lv, d] > 1 and self.spatial_y[lv, d] > 1 for d in range(len(dims))):
                    raise ValueError(f"level {name}: a dimension split over both X and Y has no Timeloop directive")
                seq = xs + rest + ys
                out.append({"target": name, "type": "spatial",
                            "factors": " ".join(f"{dims[d]}={int(self.spatial[lv, d])}" for d in range(len(dims))),
                            "permutation": "".join(dims[d] for d in seq) if all(len(x) == 1 for x in dims)
                            else " ".join(dims[d] for d in seq),
                            "split": len(xs) + len(rest) if not ys else len(xs)})
            keep = [workload.dataspaces[t].name for t in range(len(workload.dataspaces)) if self.keep[lv, t]]
            bypass = [workload.dataspaces[t].name for t in range(len(workload.dataspaces)) if not self.keep[lv, t]]
            out.append({"target": name, "type": "datatype", "keep": keep, "bypass": bypass})
        return out


def parse_factors(text, dims, where, p):
    """'R=3 P=16', 'R=3,P=16' or 'C1 M8 R1' -> {dim: factor}."""
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        names = sorted(dims, key=len, reverse=True)
        for tok in re.split(r"[,\s]+", str(text).strip()):
            if not tok:
                continue
            m = re.fullmatch(r"([A-Za-z_]\w*?)\s*=\s*(-?\d+)", tok)
            if m:
                items.append((m[1], m[2]))
                continue
            name = next((n for n in names if tok.startswith(n) and re.fullmatch(r"\d+", tok[len(n):])), None)
            if name is None:
                p.add(where, f"cannot read factor {tok!r}: expected DIM=N with DIM in {list(dims)}")
                continue
            items.append((name, tok[len(name):]))
    out = {}
    for name, val in items:
        if name not in dims:
            p.add(where, f"unknown dimension {name!r} in factors (dimensions are {list(dims)})")
            continue
        try:
            out[name] = int(val)
        except (TypeError, ValueError):
            p.add(where, f"factor of {name} must be an integer, got {val!r}")
            continue
        if out[name] < 0:
            p.add(where, f"factor of {name} must be >= 0, got {val}")
    return out


def parse_permutation(text, dims, where, p):
    """'RPK' or 'R P K' or [R, P, K] -> dim indices innermost first; missing dims appended."""
    if isinstance(text, list):
        toks = [str(t) for t in text]
    elif " " in str(text).strip() or "," in str(text):
        toks = [t for t in re.split(r"[,\s]+", str(text).strip()) if t]
    else:
        toks = list(str(text).strip())
        if not all(t in dims for t in toks):  # multi-character dimension names
            toks = [str(text).strip()]
    seen = []
    for t in toks:
        if t not in dims:
            p.add(where, f"unknown dimension {t!r} in permutation (dimensions are {list(dims)})")
        elif t in seen:
            p.add(where, f"dimension {t!r} appears twice in permutation")
        else:
            seen.append(t)
    return [dims.index(t) for t in seen] + [i for i, d in enumerate(dims) if d not in seen]


def parse_mapping(directives, arch, workload, where):
    """Timeloop `mapping:` list -> Mapping. Validates names and that factors multiply to the bounds."""
    p = Problems()
    L, D, T = len(arch.levels), len(workload.dims), len(workload.dataspaces)
    temporal = np.ones((L, D), np.int64)
    spatial = np.ones((L, D), np.int64)
    sx, sy = np.ones((L, D), np.int64), np.ones((L, D), np.int64)
    perm = np.tile(np.arange(D), (L, 1))
    sperm = np.tile(np.arange(D), (L, 1))
    keep = np.ones((L, T), bool)
    zero = np.zeros((L, D), bool)
    names = arch.names
    ds_names = [t.name for t in workload.dataspaces]
    if not isinstance(directives, list):
        p.add(where("mapping"), "expected a list of directives (target, type, factors, permutation, keep/bypass)")
        p.raise_if_any()
    for i, m in enumerate(directives):
        at = ("mapping", i)
        if not isinstance(m, dict):
            p.add(where(*at), "expected a mapping directive")
            continue
        target, kind = m.get("target"), m.get("type", "temporal")
        if target not in names:
            hint = " (the compute unit takes no directives)" if target == arch.compute.name else ""
            p.add(where(*at, "target"), f"unknown level {target!r}{hint}; levels are {list(reversed(names))}")
            continue
        lv = names.index(target)
        if kind in ("temporal", "spatial"):
            f = parse_factors(m.get("factors", ""), workload.dims, where(*at, "factors"), p)
            arr = temporal if kind == "temporal" else spatial
            for name, v in f.items():
                d = workload.dims.index(name)
                if v == 0:
                    zero[lv, d] = True
                arr[lv, d] = max(v, 1)
            order = parse_permutation(m.get("permutation", ""), workload.dims, where(*at, "permutation"), p)
            if kind == "temporal":
                perm[lv] = order
            else:
                sperm[lv] = order
                split = m.get("split", D)
                if not isinstance(split, int) or isinstance(split, bool) or split < 0:
                    p.add(where(*at, "split"), f"split must be a non-negative integer, got {split!r}")
                    split = D
                for pos, d in enumerate(order):
                    on_x = pos < split
                    sx[lv, d], sy[lv, d] = (spatial[lv, d], 1) if on_x else (1, spatial[lv, d])
        elif kind in ("bypass", "datatype", "dataspace"):
            for key, val in (("keep", True), ("bypass", False)):
                for j, n in enumerate(m.get(key) or []):
                    if n not in ds_names:
                        p.add(where(*at, key, j), f"unknown dataspace {n!r}; dataspaces are {ds_names}")
                    else:
                        keep[lv, ds_names.index(n)] = val
        else:
            p.add(where(*at, "type"), f"unknown directive type {kind!r}: expected temporal, spatial or datatype")
    # Factor 0 means "the rest of the dimension".
    for lv, d in zip(*np.nonzero(zero)):
        others = np.prod(temporal[:, d]) * np.prod(spatial[:, d]) // max(temporal[lv, d], spatial[lv, d])
        val = workload.bounds[d] // others
        if temporal[lv, d] == 1:
            temporal[lv, d] = val
    for d, name in enumerate(workload.dims):
        got = int(np.prod(temporal[:, d]) * np.prod(spatial[:, d]))
        if got != workload.bounds[d]:
            p.add(where("mapping"), f"factors of {name} multiply to {got} over all levels, but its bound is "
                                    f"{workload.bounds[d]}")
    p.raise_if_any()
    return Mapping(temporal, sx, sy, perm, keep, sperm)
