"""Timeloop mapspace constraints: what the mapper may choose, per level.

Sources, all merged into one `Constraints` (re-specifying an item with a different value is an
error, as in Timeloop's `Constraints::ParseSingleConstraint`):

* `mapspace_constraints` / `mapspace` / `architecture_constraints` sections (v0.3/v0.4 target
  lists: `{target, type: temporal|spatial|dataspace|bypass|datatype|utilization, ...}`);
* `constraints:` attached to nodes of a v0.4 `architecture: nodes:` tree (timeloopfe input):
  a `!Container` with a spatial fanout targets timeloopfe's dummy level `inter_<name>_spatial`;
  inside a `!Parallel` node every branch bypasses the dataspaces its siblings keep
  (timeloopfe's Dataspace2Branch);
* timeloopfe's defaults for its dummy levels (class `dummy_storage`): temporal factors 1 and
  every dataspace bypassed.

Semantics (SPEC-dense section 3.4):
* factors `D=v` fixes a factor (0 = whole dimension; larger than the bound = the bound, with a
  warning), `D<=v` / `D>=v` bound it, `default_max_factor` / `default_min_factor` bound the
  dimensions not named. Every factor constraint is a box [lo, hi] per (dimension, tiling slot).
* permutation (innermost first): dims before `_` are a fixed prefix (innermost), after `_` a
  fixed suffix (outermost), the rest is free. Without `_` the whole list is the prefix.
* split (spatial): the first `split` loops of the spatial permutation run along X.
* keep/bypass: unspecified dataspaces below the outermost level are free.
* utilization/parallelism `min`: used fanout / total fanout over all spatial levels >= min.
* a dimension the workload lacks is an error, as in Timeloop; with `drop_absent_dims=True`
  (whole-network runs: one constraints file for CNN, depthwise and matmul layers) factors and
  permutation entries naming it are dropped instead, with one warning per constraint.
"""

import re
from dataclasses import dataclass, field

import numpy as np

from jaxloop.errors import SpecError

IGNORED_KEYS = ("no_reuse", "no_temporal_reuse", "rmw_first_update", "no_link_transfer", "no_coalesce",
                "no_multicast_no_reduction", "remainders", "proportion")
_FACTOR = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z_0-9]*?)(?P<op><=|>=|=)?(?P<val>\d+)$")


@dataclass
class SlotConstraint:
    """Constraints of one tiling slot (a level's temporal loops, or its spatial loops)."""

    fixed: dict = field(default_factory=dict)  # dim index -> factor
    max: dict = field(default_factory=dict)
    min: dict = field(default_factory=dict)
    default_max: int = None
    default_min: int = None
    prefix: list = None  # dim indices, innermost first; None = no permutation constraint
    suffix: list = None
    split: int = None
    origin: dict = field(default_factory=dict)  # item -> where it was given (for conflict messages)

    @property
    def has_permutation(self):
        return self.prefix is not None

    def bounds(self, d, bound):
        """(lo, hi) for dim d's factor in this slot."""
        if d in self.fixed:
            return self.fixed[d], self.fixed[d]
        lo = self.min.get(d, self.default_min if self.default_min is not None else 1)
        hi = self.max.get(d, self.default_max if self.default_max is not None else bound)
        return max(1, lo), min(bound, hi)


@dataclass
class Constraints:
    L: int
    D: int
    T: int
    temporal: list  # [L] SlotConstraint
    spatial: list  # [L] SlotConstraint
    keep: np.ndarray  # [L, T] int8: 1 keep, 0 bypass, -1 free
    min_utilization: float = None
    warnings: list = field(default_factory=list)
    keep_origin: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, spec):
        L, D, T = len(spec.arch.levels), len(spec.workload.dims), len(spec.workload.dataspaces)
        keep = np.full((L, T), -1, np.int8)
        keep[L - 1] = 1
        return cls(L, D, T, [SlotConstraint() for _ in range(L)], [SlotConstraint() for _ in range(L)], keep)


class _Builder:
    """Accumulates constraint items with Timeloop's re-specification checks."""

    def __init__(self, spec, drop_absent_dims=False):
        self.spec = spec
        self.drop_absent = drop_absent_dims
        self.absent = []  # names dropped from the constraint being parsed (drop_absent_dims)
        self.c = Constraints.empty(spec)
        self.dims = spec.workload.dims
        self.ds = [t.name for t in spec.workload.dataspaces]
        self.names = spec.arch.names
        self.problems = []
        self.defaults = set()  # (kind, level, key) set by timeloopfe defaults (user may override)

    # ------------------------------------------------------------------ helpers
    def error(self, where, msg):
        self.problems.append(f"{where}: {msg}" if where else msg)

    def warn(self, where, msg):
        self.c.warnings.append(f"{where}: {msg}" if where else msg)

    def _absent(self, name):
        """With drop_absent_dims: remember a dimension name the workload lacks; True = drop it."""
        if not self.drop_absent or not re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", str(name)):
            return False
        if name not in self.absent:
            self.absent.append(name)
        return True

    def warn_absent(self, where):
        if self.absent:
            self.warn(where, f"dropped the parts naming {', '.join(self.absent)}: the workload "
                             f"{self.spec.workload.name} has no such dimension (dimensions are {list(self.dims)})")
            self.absent = []

    def level(self, name, where):
        if name in self.names:
            return self.names.index(name)
        hint = " (the compute unit takes no constraints)" if name == self.spec.arch.compute.name else ""
        self.error(where, f"unknown target {name!r}{hint}; levels are {list(reversed(self.names))}")
        return None

    def _set(self, store, key, value, slot, item, where, default=False):
        tag = (id(slot), item)
        if key in store and store[key] != value and tag not in self.defaults:
            self.error(where, f"re-specification of {item} ({store[key]} vs {value}; first given at "
                              f"{slot.origin.get(item, '?')}): this may be a conflict between architecture and "
                              "mapspace constraints")
            return
        if default:
            self.defaults.add(tag)
        else:
            self.defaults.discard(tag)
        store[key] = value
        slot.origin[item] = where

    # ------------------------------------------------------------------ parsers
    def factors(self, text, where):
        """'R=3 P<=16', ['N=1', 'C>=2'], 'C1 M8' -> list of (dim, op, value)."""
        if text is None:
            return []
        if isinstance(text, dict):
            toks = [f"{k}={v}" for k, v in text.items()]
        elif isinstance(text, (list, tuple)):
            toks = [str(t) for t in text]
        else:
            toks = [str(text)]
        out = []
        names = sorted(self.dims, key=len, reverse=True)
        for t in toks:
            t = re.sub(r"\s*(<=|>=|=)\s*", r"\1", t.strip())
            for tok in re.split(r"[,\s]+", t):
                if not tok:
                    continue
                m = _FACTOR.match(tok)
                name, op, val = (m["name"], m["op"], m["val"]) if m else (None, None, None)
                if m and not op:  # 'C12': dimension name glued to its value
                    glued = name
                    name = next((n for n in names if tok.startswith(n) and tok[len(n):].isdigit()), None)
                    val = tok[len(name):] if name else None
                    op = "="
                    if name is None and self._absent(glued):
                        continue
                if name is not None and name not in self.dims and self._absent(name):
                    continue
                if name is None or name not in self.dims:
                    self.error(where, f"cannot read factor {tok!r}: expected DIM=N, DIM<=N or DIM>=N with DIM in "
                                      f"{list(self.dims)}")
                    continue
                out.append((self.dims.index(name), op, int(val)))
        return out

    def permutation(self, text, where):
        """-> (prefix, suffix) dim index lists, innermost first."""
        if text is None:
            return None
        if isinstance(text, (list, tuple)):
            toks = [str(t).strip() for t in text]
        else:
            s = str(text).strip()
            if re.search(r"[\s,]", s):
                toks = [t for t in re.split(r"[\s,]+", s) if t]
            elif all(ch in self.dims or ch == "_" for ch in s) or (
                    self.drop_absent and all(len(d) == 1 for d in self.dims) and re.fullmatch(r"[A-Za-z_]+", s)):
                toks = list(s)  # one letter per dimension (Timeloop's own reading)
            else:  # multi-character names glued together: greedy longest match
                toks, names = [], sorted([*self.dims, "_"], key=len, reverse=True)
                while s:
                    n = next((n for n in names if s.startswith(n)), None)
                    if n is None:
                        self.error(where, f"cannot read permutation {text!r}: {s!r} is not a dimension")
                        return None
                    toks.append(n)
                    s = s[len(n):]
        toks = [t for t in toks if t]
        if toks.count("_") > 1:
            self.error(where, f"permutation {text!r} has more than one '_'")
            return None
        toks = [t for t in toks if t == "_" or t in self.dims or not self._absent(t)]
        pre, suf = (toks, []) if "_" not in toks else (toks[:toks.index("_")], toks[toks.index("_") + 1:])
        seen = []
        for t in pre + suf:
            if t not in self.dims:
                self.error(where, f"unknown dimension {t!r} in permutation (dimensions are {list(self.dims)})")
                return None
            if t in seen:
                self.error(where, f"dimension {t!r} appears twice in permutation")
                return None
            seen.append(t)
        return [self.dims.index(t) for t in pre], [self.dims.index(t) for t in suf]

    # ------------------------------------------------------------------ items
    def iteration(self, lv, kind, item, where, default=False):
        try:
            self._iteration(lv, kind, item, where, default)
        finally:
            self.warn_absent(where)

    def _iteration(self, lv, kind, item, where, default=False):
        slot = (self.c.temporal if kind == "temporal" else self.c.spatial)[lv]
        bounds = self.spec.workload.bounds
        lname = self.names[lv]
        if kind == "spatial":
            fx, fy = self.spec.arch.fanout(lv)
            if fx * fy == 1:
                nontrivial = any(v > 1 for _, op, v in self.factors(item.get("factors"), where) if op != "<=")
                msg = (f"spatial constraint on {lname}, which has no spatial fanout below it (its child has as "
                       "many instances)")
                if nontrivial:
                    self.error(where, msg)
                else:
                    self.warn(where, msg + "; ignored")
                return
        for d, op, v in self.factors(item.get("factors"), where):
            dn = self.dims[d]
            if op == "=":
                if v == 0:
                    v = bounds[d]
                elif v > bounds[d]:
                    self.warn(where, f"factor {dn}={v} exceeds the bound {bounds[d]}: using {dn}={bounds[d]}")
                    v = bounds[d]
                self._set(slot.fixed, d, v, slot, f"{kind} factor {dn} at {lname}", where, default)
            elif op == "<=":
                self._set(slot.max, d, v, slot, f"{kind} max factor {dn} at {lname}", where, default)
            else:
                self._set(slot.min, d, v, slot, f"{kind} min factor {dn} at {lname}", where, default)
        for key in ("default_max_factor", "default_min_factor"):
            if item.get(key) is not None:
                attr = "default_max" if "max" in key else "default_min"
                setattr(slot, attr, int(item[key]))
        if item.get("permutation") is not None:
            perm = self.permutation(item.get("permutation"), where)
            if perm is not None:
                cur = (slot.prefix, slot.suffix)
                tag = (id(slot), "perm")
                if slot.prefix is not None and cur != perm and tag not in self.defaults:
                    self.error(where, f"re-specification of the {kind} permutation at {lname} (first given at "
                                      f"{slot.origin.get('perm', '?')})")
                else:
                    slot.prefix, slot.suffix = perm
                    slot.origin["perm"] = where
                    (self.defaults.add if default else self.defaults.discard)(tag)
        if item.get("split") is not None:
            if kind != "spatial":
                self.warn(where, f"'split' on a temporal constraint at {lname} is ignored")
            else:
                s = item["split"]
                if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                    self.error(where, f"split must be a non-negative integer, got {s!r}")
                else:
                    s = min(s, self.c.D)
                    if slot.split is not None and slot.split != s:
                        self.error(where, f"re-specification of the spatial split at {lname}")
                    slot.split = s
        for key in IGNORED_KEYS:
            if item.get(key):
                self.warn(where, f"'{key}' is not modelled by jaxloop; ignored")

    def dataspace(self, lv, item, where, default=False):
        for key, val in (("keep", 1), ("bypass", 0)):
            for n in item.get(key) or []:
                if n not in self.ds:
                    self.error(where, f"unknown dataspace {n!r} in {key}; dataspaces are {self.ds}")
                    continue
                t = self.ds.index(n)
                if lv == self.c.L - 1:
                    if val == 0:
                        self.error(where, f"{n} cannot bypass the outermost level {self.names[lv]}")
                    continue
                cur = int(self.c.keep[lv, t])
                tag = ("keep", lv, t)
                if cur != -1 and cur != val and tag not in self.defaults:
                    self.error(where, f"re-specification of keep/bypass of {n} at {self.names[lv]} (first given at "
                                      f"{self.c.keep_origin.get((lv, t), '?')})")
                    continue
                self.c.keep[lv, t] = val
                self.c.keep_origin[(lv, t)] = where
                (self.defaults.add if default else self.defaults.discard)(tag)
        for key in ("no_coalesce",):
            if item.get(key):
                self.warn(where, f"'{key}' is not modelled by jaxloop; ignored")

    def target_item(self, item, where):
        """One entry of a v0.3/v0.4 constraints list."""
        if not isinstance(item, dict):
            self.error(where, "expected a constraint with 'target' and 'type'")
            return
        kind = str(item.get("type", "")).lower()
        if kind in ("utilization", "parallelism"):
            self.utilization(item, where)
            return
        target = item.get("target", item.get("name"))
        lv = self.level(target, where)
        if lv is None:
            return
        if kind in ("temporal", "spatial"):
            self.iteration(lv, kind, item, where)
        elif kind in ("dataspace", "datatype", "bypass", "bypassing"):
            self.dataspace(lv, item, where)
        elif kind == "max_overbooked_proportion":
            self.warn(where, "max_overbooked_proportion (sparse overbooking) is not modelled; ignored")
        else:
            self.error(where, f"unknown constraint type {kind!r}: expected temporal, spatial, dataspace, "
                              "utilization")

    def utilization(self, item, where):
        v = item.get("min")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            self.error(where, f"utilization constraint needs a numeric 'min', got {v!r}")
            return
        if self.c.min_utilization is not None and self.c.min_utilization != v:
            self.error(where, "re-specification of the min utilization/parallelism")
        self.c.min_utilization = float(v)

    def group(self, lv, group, where, kinds=("temporal", "spatial", "dataspace")):
        """A v0.4 `constraints:` group {temporal: {...}, spatial: {...}, dataspace: {...}}."""
        if not isinstance(group, dict):
            self.error(where, "expected a constraints group {temporal, spatial, dataspace}")
            return
        for key, val in group.items():
            w = f"{where}.{key}"
            if val in (None, {}, []):
                continue
            if key in ("temporal", "spatial") and key in kinds:
                self.iteration(lv, key, val, w)
            elif key == "dataspace" and key in kinds:
                self.dataspace(lv, val, w)
            elif key in ("utilization", "parallelism"):
                self.utilization(val, w)
            elif key == "max_overbooked_proportion":
                self.warn(w, "max_overbooked_proportion (sparse overbooking) is not modelled; ignored")
            else:
                self.error(w, f"unknown constraint group {key!r} for this node")

    # ------------------------------------------------------------------ sources
    def dummy_defaults(self):
        arch = self.spec.arch
        for lv, level in enumerate(arch.levels):
            if level.cls == "dummy_storage" and lv < self.c.L - 1:
                where = f"timeloopfe default for dummy level {level.name}"
                self.iteration(lv, "temporal", {"factors": [f"{d}=1" for d in self.dims]}, where, default=True)
                self.dataspace(lv, {"bypass": list(self.ds)}, where, default=True)

    def target_list(self, section, where):
        if section is None:
            return
        items = section
        if isinstance(section, dict):
            items = next((section[k] for k in ("targets", "constraints") if isinstance(section.get(k), list)), None)
            if items is None:
                if section.get("targets") is None and section.get("constraints") is None:
                    return
                self.error(where, "expected a list under 'targets'")
                return
        if not isinstance(items, list):
            self.error(where, "expected a list of constraints")
            return
        for i, item in enumerate(items):
            self.target_item(item, f"{where}[{i}]")

    def nodes(self, nodes, where):
        """Walk a v0.4 `architecture: nodes:` tree (ruamel nodes keep their !Tags)."""
        ds_all = set(self.ds)

        def tag(n):
            t = getattr(getattr(n, "tag", None), "value", None)
            if t:
                return t.lstrip("!")
            if isinstance(n, dict):
                if "nodes" in n:
                    return "Hierarchical"
                return "Component" if "class" in n else ("Container" if "name" in n else "Nothing")
            return None

        def kept(n):
            s = set()
            cons = n.get("constraints") or {}
            s |= set((cons.get("dataspace") or {}).get("keep") or [])
            for c in n.get("nodes") or []:
                s |= kept(c)
            return s

        def components(n):
            if tag(n) in ("Component",):
                yield n
            for c in n.get("nodes") or []:
                yield from components(c)

        def walk(items, path):
            for i, n in enumerate(items or []):
                w = f"{path}[{i}]"
                if not isinstance(n, dict):
                    self.error(w, "expected an architecture node")
                    continue
                t = tag(n)
                if t in ("Hierarchical", "Parallel", "Pipelined"):
                    sub = n.get("nodes") or []
                    if t == "Parallel":
                        for j, c in enumerate(sub):
                            if not isinstance(c, dict):
                                continue
                            bypass = sorted(ds_all - kept(c))
                            for comp in components(c):
                                if comp.get("name") in self.names and bypass:
                                    self.dataspace(self.names.index(comp["name"]), {"bypass": bypass},
                                                   f"{w}.nodes[{j}] (!Parallel branch)", default=True)
                    walk(sub, f"{w}.nodes")
                    continue
                cons = n.get("constraints")
                name = n.get("name")
                if t == "Container":
                    dummy = f"inter_{name}_spatial"
                    if cons and dummy in self.names:
                        self.group(self.names.index(dummy), cons, f"{w}.constraints")
                    elif cons and any(cons.get(k) for k in ("spatial", "temporal", "dataspace")):
                        self.warn(w, f"constraints of container {name!r} ignored: it has no spatial fanout "
                                     f"(no level {dummy})")
                elif t == "Component":
                    if cons and name in self.names:
                        self.group(self.names.index(name), cons, f"{w}.constraints")
                    elif cons and name != self.spec.arch.compute.name:
                        self.warn(w, f"constraints of {name!r} ignored: not a storage level of the architecture")
                # Nothing: only matters for the Parallel keep sets above
        walk(nodes, where)


def node_architecture(doc):
    """The v0.4 `nodes` list of a document's architecture section, or None."""
    arch = doc.get("architecture") if isinstance(doc, dict) else None
    if isinstance(arch, dict) and isinstance(arch.get("nodes"), list):
        return arch["nodes"]
    return None


def parse_constraints(spec, node_docs=(), extra_sections=(), drop_absent_dims=False):
    """All constraints that apply to `spec`: timeloopfe dummy defaults, the merged document's
    `architecture_constraints` / `mapspace_constraints` / `mapspace` sections, and `constraints:`
    attached to the nodes of v0.4 architecture trees in `node_docs` ((path, document) pairs,
    loaded with ruamel's round-trip loader so !Tags survive). Raises SpecError listing every problem.
    `drop_absent_dims`: drop (with a warning) factors and permutation entries naming dimensions
    the workload lacks, instead of Timeloop's error."""
    b = _Builder(spec, drop_absent_dims)
    b.dummy_defaults()
    doc = spec.doc or {}
    for key in ("architecture_constraints", "mapspace_constraints", "mapspace", "constraints"):
        if key in doc and doc[key] is not None:
            b.target_list(doc[key], key)
    for where, section in extra_sections:
        b.target_list(section, where)
    for path, nd in node_docs:
        nodes = node_architecture(nd)
        if nodes is not None:
            b.nodes(nodes, f"{path}: architecture.nodes")
    c = b.c
    # cross-checks: a fixed factor outside a max/min, a factor that cannot divide
    for kind, slots in (("temporal", c.temporal), ("spatial", c.spatial)):
        for lv, slot in enumerate(slots):
            for d, v in slot.fixed.items():
                if spec.workload.bounds[d] % v:
                    b.error(slot.origin.get(f"{kind} factor {spec.workload.dims[d]} at {spec.arch.names[lv]}"),
                            f"{kind} factor {spec.workload.dims[d]}={v} at {spec.arch.names[lv]} does not divide the "
                            f"bound {spec.workload.bounds[d]} (imperfect factorization is not supported)")
    for d, name in enumerate(spec.workload.dims):
        fixed = 1
        for slots in (c.temporal, c.spatial):
            for slot in slots:
                fixed *= slot.fixed.get(d, 1)
        if spec.workload.bounds[d] % fixed:
            b.error("constraints", f"fixed factors of {name} multiply to {fixed}, which does not divide its bound "
                                   f"{spec.workload.bounds[d]}")
    if b.problems:
        raise SpecError(b.problems)
    return c


def load_node_doc(path):
    """A YAML file read with ruamel's round-trip loader (keeps !Container / !Parallel tags)."""
    from jaxloop.spec.yamlio import load_yaml

    return load_yaml(path)


def load_mapper_inputs(*paths, drop_absent_dims=False):
    """(spec, constraints) for `jaxloop map FILE.yaml...`: the files are merged like Timeloop's
    inputs; an `architecture` given as a v0.4 `nodes` tree (timeloopfe's source format) gives
    its `constraints:`, and the architecture itself unless another file supplies the dumped
    `subtree` form. `drop_absent_dims` as in `parse_constraints`."""
    from jaxloop.spec import spec_from_doc
    from jaxloop.spec.yamlio import Source, load_yaml

    doc, source, node_docs, tree = {}, Source(), [], None
    for p in paths:
        data = load_yaml(p)
        for key, value in data.items():
            if key == "architecture" and node_architecture(data) is not None:
                node_docs.append((str(p), data))
                continue
            if key == "architecture":
                tree = (str(p), value)
            doc[key] = value
            source.files[key] = (str(p), value)
    if tree is None and node_docs:  # no dumped `subtree` form: convert the `nodes` tree (jaxloop.spec.arch)
        path, data = node_docs[-1]
        doc["architecture"] = data["architecture"]
        source.files["architecture"] = (path, data["architecture"])
    spec = spec_from_doc(doc, source, need_mapping=False, files=paths)
    return spec, parse_constraints(spec, node_docs, drop_absent_dims=drop_absent_dims)
