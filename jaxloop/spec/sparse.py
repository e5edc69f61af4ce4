"""Sparseloop inputs: `problem.instance.densities` and `sparse_optimizations`, read as Timeloop does.

    sparse = parse_sparse(spec)          # SparseSpec, or .active == False for a dense run
    sparse.densities[t].kind             # 'fixed_structured' | 'hypergeometric' | 'banded' | 'dense'
    sparse.formats[(level, t)].ranks     # RankFormat per rank, rank 0 innermost
    sparse.safs                          # storage action optimizations, in declaration order
    sparse.compute_gating, sparse.compute_skipping

Timeloop v0.4 names (`representation_format`, `action_optimization`, `condition_on`,
`flattened_rankIDs`, `compute_optimization`) and the v0.3 dashed spellings are both accepted.
A `sparse_optimizations` block may also sit on an architecture component (v0.4 arch style);
it is then a target named after that component. Format ranks are listed top (outermost) rank
first in YAML, as in Timeloop; `RankFormat` tuples here are innermost first (Timeloop reverses
them the same way). Everything wrong is reported at once as one SpecError naming file, line
and key path.

Word bits follow Timeloop's `AdjustFormatWordBits`: an unspecified width takes the level's
`metadata_datawidth` (bitmask metadata defaults to 1 bit); a width that does not divide the
level's `metadata_storage_width` is bumped up to the next divisor.
"""

from dataclasses import dataclass, field

from jaxloop.errors import Problems
from jaxloop.spec.yamlio import merge_files

FORMATS = ("U", "UOP", "B", "RLE", "CP", "UB")
_FORMAT_ALIASES = {"u": "U", "uop": "UOP", "b": "B", "bitmask": "B", "rle": "RLE", "cp": "CP", "ub": "UB",
                   "coordinate_payload": "CP", "run_length_encoding": "RLE", "uncompressed": "U",
                   "uncompressed_offset_pair": "UOP", "uncompressed_bitmask": "UB"}
COMPRESSED = {"U": False, "UOP": False, "B": True, "RLE": True, "CP": True, "UB": False}
DISTRIBUTIONS = {"fixed_structured": "fixed_structured", "fixed-structured": "fixed_structured",
                 "fixed": "fixed_structured", "hypergeometric": "hypergeometric", "banded": "banded",
                 "diagonal": "banded"}
SAF_KINDS = {"gating": "gating", "skipping": "skipping", "skipping_spatial": "skipping_spatial",
             "spatial_skipping": "skipping_spatial", "position_skipping": "skipping_spatial",
             "position-skipping": "skipping_spatial", "skipping-spatial": "skipping_spatial",
             "spatial-skipping": "skipping_spatial"}


@dataclass(frozen=True)
class Density:
    """Density model of one dataspace. `kind` 'dense' means no entry (density 1)."""

    kind: str = "dense"
    density: float = 1.0
    band_width: int = 0
    tensor_size: int = 0  # 0: the workload tensor's size (Timeloop sets it from the problem)


@dataclass(frozen=True)
class RankFormat:
    """One rank's format. `flatten` is the set of dimension indices of its flattening rule, or None."""

    format: str
    metadata_word_bits: int
    payload_word_bits: int
    flatten: tuple = None

    @property
    def compressed(self):
        return COMPRESSED[self.format]


@dataclass(frozen=True)
class TensorFormat:
    """Representation format of one dataspace at one level; ranks innermost first."""

    ranks: tuple
    inner_to_outer: bool = False

    @property
    def compressed(self):
        return any(r.compressed for r in self.ranks)


@dataclass(frozen=True)
class Saf:
    """One action-optimization group at storage level `level`: `options` are (target, condition_on)
    pairs of dataspace indices, alternatives the model chooses between (Timeloop picks the one
    that saves the most read energy)."""

    level: int
    kind: str  # 'gating' | 'skipping' | 'skipping_spatial'
    options: tuple


@dataclass(frozen=True)
class SparseSpec:
    densities: tuple = ()  # Density per dataspace
    formats: dict = field(default_factory=dict, hash=False, compare=False)  # (level, t) -> TensorFormat
    safs: tuple = ()
    compute_gating: bool = False
    compute_skipping: bool = False
    decompression_supported: tuple = ()  # per level
    compression_supported: tuple = ()  # per level

    @property
    def active(self):
        """Timeloop skips sparse analysis when no optimization is declared (densities alone do nothing)."""
        return bool(self.formats or self.safs or self.compute_gating or self.compute_skipping)


def _norm(d):
    """Dashed v0.3 keys -> v0.4 underscores, recursively for mappings."""
    if isinstance(d, dict):
        return {str(k).replace("-", "_"): v for k, v in d.items()}
    return d


def _component_name(name):
    import re
    return re.sub(r"\[\d+\.\.\d+\]", "", str(name)).strip()


def _where_fn(spec):
    try:
        _, source = merge_files(spec.files) if spec.files else (None, None)
    except Exception:  # noqa: BLE001 - locations are a nicety; never fail on them
        source = None
    files = ", ".join(spec.files) or "input"

    def where(*path):
        if source is not None and path and path[0] in source.files:
            return source.where(*path)
        return f"{files}: " + str(path[0]) + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[1:])
    return where


def parse_densities(spec, where, p):
    """problem.instance.densities -> tuple of Density (one per dataspace)."""
    wl = spec.workload
    inst = ((spec.doc.get("problem") or {}).get("instance") or {})
    raw = inst.get("densities") or {}
    out = []
    names = [ds.name for ds in wl.dataspaces]
    if not isinstance(raw, dict):
        p.add(where("problem", "instance", "densities"), "expected a mapping {dataspace: {distribution, density}}")
        return tuple(Density() for _ in names)
    for k in raw:
        if k not in names:
            p.add(where("problem", "instance", "densities", k), f"unknown dataspace {k!r}; dataspaces are {names}")
    for name in names:
        d = raw.get(name)
        at = ("problem", "instance", "densities", name)
        if d is None:
            out.append(Density())
            continue
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            d = {"density": d}
        if not isinstance(d, dict):
            p.add(where(*at), "expected {distribution, density[, band_width]} or a number")
            out.append(Density())
            continue
        d = _norm(d)
        dist = str(d.get("distribution", "hypergeometric"))
        kind = DISTRIBUTIONS.get(dist.lower())
        if kind is None:
            p.add(where(*at, "distribution"), f"unknown distribution {dist!r}: expected fixed_structured, "
                                               "hypergeometric or banded (real-data is not supported)")
            out.append(Density())
            continue
        dens = d.get("density", 1.0 if kind != "banded" else None)
        bw = d.get("band_width", 0)
        if kind == "banded":
            if not isinstance(bw, int) or isinstance(bw, bool) or bw < 0:
                p.add(where(*at, "band_width"), f"band_width must be a non-negative integer, got {bw!r}")
                bw = 0
            out.append(Density("banded", float(dens) if isinstance(dens, (int, float)) else 1.0, int(bw)))
            continue
        if isinstance(dens, bool) or not isinstance(dens, (int, float)) or not 0 <= dens <= 1:
            p.add(where(*at, "density"), f"density must be a number in [0, 1], got {dens!r}")
            dens = 1.0
        size = d.get("workload_tensor_size", 0) or 0
        if not isinstance(size, int) or size < 0:
            p.add(where(*at, "workload_tensor_size"), f"expected a non-negative integer, got {size!r}")
            size = 0
        out.append(Density(kind, float(dens), int(bw) if isinstance(bw, int) else 0, int(size)))
    return tuple(out)


def _targets(spec, where):
    """(name, directive, path) for every sparse_optimizations target, top-level block first,
    then blocks attached to architecture components."""
    out = []
    top = spec.doc.get("sparse_optimizations")
    if isinstance(top, dict):
        top = _norm(top)
        for i, t in enumerate(top.get("targets") or []):
            name = _norm(t).get("name") if isinstance(t, dict) else None
            out.append((name, t, ("sparse_optimizations", "targets", i)))

    def walk(node, path):
        if not isinstance(node, dict):
            return
        for i, leaf in enumerate(node.get("local") or []):
            if isinstance(leaf, dict) and isinstance(leaf.get("sparse_optimizations"), dict):
                so = _norm(leaf["sparse_optimizations"])
                targets = so.get("targets")
                if targets is None:
                    targets = [dict(so, name=_component_name(leaf.get("name")))]
                for j, t in enumerate(targets):
                    t = dict(_norm(t))
                    t.setdefault("name", _component_name(leaf.get("name")))
                    out.append((t["name"], t, (*path, "local", i, "sparse_optimizations")))
        for i, sub in enumerate(node.get("subtree") or []):
            walk(sub, (*path, "subtree", i))

    walk(spec.doc.get("architecture") or {}, ("architecture",))
    return out


def _adjust_bits(bits, level, where_at, p):
    """Timeloop's AdjustFormatWordBits for one width (None = unspecified)."""
    a = level.attributes
    md_width = a.get("metadata_storage_width") or 0
    default = a.get("metadata_datawidth", a.get("metadata_word_bits", 0)) or 0
    if bits is None:
        return int(default)
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 0:
        p.add(where_at, f"word bits must be a non-negative integer, got {bits!r}")
        return int(default)
    adj = bits
    if bits and md_width and md_width % bits:
        adj = next((b for b in range(bits, 2 * bits) if md_width % b == 0), 2 * bits)
    if md_width and adj > md_width:
        p.add(where_at, f"word bits {adj} exceed the level's metadata_storage_width {md_width}")
    return int(adj)


def parse_sparse(spec):
    """The whole sparse part of `spec` (a jaxloop.spec.Spec) as a SparseSpec; SpecError if malformed."""
    where = _where_fn(spec)
    p = Problems()
    wl, arch = spec.workload, spec.arch
    dens = parse_densities(spec, where, p)
    ds_names = [ds.name for ds in wl.dataspaces]
    lv_names = list(arch.names)
    formats, safs = {}, []
    gate = skip = False
    for name, t, at in _targets(spec, where):
        if not isinstance(t, dict):
            p.add(where(*at), "expected {name, representation_format / action_optimization / compute_optimization}")
            continue
        t = _norm(t)
        name = _component_name(name) if name is not None else None
        keys = set(t) - {"name", "representation_format", "action_optimization", "compute_optimization"}
        if keys:
            p.add(where(*at), f"unknown key(s) {sorted(keys)} (expected representation_format, "
                              "action_optimization, compute_optimization)")
        if name is None:
            p.add(where(*at), "missing 'name' (a storage level or the compute unit)")
            continue
        if "compute_optimization" in t:
            if name != arch.compute.name:
                p.add(where(*at, "name"), f"compute_optimization must target the compute unit "
                                          f"{arch.compute.name!r}, got {name!r}")
            for i, c in enumerate(t.get("compute_optimization") or []):
                c = _norm(c) if isinstance(c, dict) else {"type": c}
                typ = str(c.get("type"))
                if typ in ("gating", "gate_on_zero_operand"):
                    gate = True
                elif typ in ("skipping", "skip_on_not_aligned_operands"):
                    skip = True
                else:
                    p.add(where(*at, "compute_optimization", i, "type"),
                          f"unknown compute optimization {typ!r}: expected gating or skipping")
        if not ({"representation_format", "action_optimization"} & set(t)):
            continue
        if name not in lv_names:
            p.add(where(*at, "name"), f"unknown storage level {name!r}; levels are {lv_names}")
            continue
        li = lv_names.index(name)
        level = arch.levels[li]
        rf = t.get("representation_format")
        if rf is not None:
            rf = _norm(rf)
            spaces = rf.get("data_spaces") if isinstance(rf, dict) else None
            if not isinstance(spaces, list):
                p.add(where(*at, "representation_format"), "expected {data_spaces: [{name, ranks: [...]}]}")
                spaces = []
            for j, dsf in enumerate(spaces):
                dat = (*at, "representation_format", "data_spaces", j)
                dsf = _norm(dsf) if isinstance(dsf, dict) else {}
                dn = dsf.get("name")
                if dn not in ds_names:
                    p.add(where(*dat, "name"), f"unknown dataspace {dn!r}; dataspaces are {ds_names}")
                    continue
                order = str(dsf.get("rank_application_order", "outer_to_inner"))
                if order not in ("outer_to_inner", "inner_to_outer"):
                    p.add(where(*dat, "rank_application_order"),
                          f"expected outer_to_inner or inner_to_outer, got {order!r}")
                ranks_raw = dsf.get("ranks")
                if not isinstance(ranks_raw, list) or not ranks_raw:
                    p.add(where(*dat, "ranks"), "expected a non-empty list of {format: ...} (top rank first)")
                    continue
                ranks = []
                for k, r in enumerate(ranks_raw):
                    rat = (*dat, "ranks", k)
                    r = _norm(r) if isinstance(r, dict) else {}
                    f = _FORMAT_ALIASES.get(str(r.get("format", "")).lower())
                    if f is None:
                        p.add(where(*rat, "format"),
                              f"unknown format {r.get('format')!r}: expected one of {list(FORMATS)}")
                        continue
                    md = r.get("metadata_word_bits", r.get("metadata_width"))
                    pl = r.get("payload_word_bits", r.get("payload_width"))
                    if f == "B" and md is None:
                        md = 1
                    if f == "U":
                        md, pl = 0, 0
                    flat = None
                    if r.get("flattened_rankIDs") is not None:
                        fr = r["flattened_rankIDs"]
                        if not isinstance(fr, list) or not fr or not all(isinstance(x, list) for x in fr):
                            p.add(where(*rat, "flattened_rankIDs"), "expected a list of lists of dimension names")
                        else:
                            dims = [x for grp in fr for x in grp]
                            bad = [x for x in dims if x not in wl.dims]
                            if bad:
                                p.add(where(*rat, "flattened_rankIDs"), f"unknown dimension(s) {bad}; dimensions are "
                                                                      f"{list(wl.dims)}")
                            flat = tuple(sorted({wl.dims.index(x) for x in dims if x in wl.dims}))
                    ranks.append(RankFormat(f, _adjust_bits(md, level, where(*rat, "metadata_word_bits"), p),
                                            _adjust_bits(pl, level, where(*rat, "payload_word_bits"), p), flat))
                if len(ranks) != len(ranks_raw):
                    continue
                ranks = tuple(reversed(ranks))  # rank 0 innermost
                lower_uncompressed = not ranks[0].compressed
                for r in ranks[1:]:
                    if lower_uncompressed and r.compressed:
                        p.add(where(*dat, "ranks"), "a compressed rank above an uncompressed rank is not supported "
                                                    "(Timeloop rejects it)")
                        break
                    lower_uncompressed = lower_uncompressed or not r.compressed
                ti = ds_names.index(dn)
                if (li, ti) in formats:
                    p.add(where(*dat), f"{dn} already has a representation format at {name}")
                formats[(li, ti)] = TensorFormat(ranks, order == "inner_to_outer")
        ao = t.get("action_optimization")
        if ao is not None:
            if not isinstance(ao, list):
                p.add(where(*at, "action_optimization"), "expected a list of {type, options: [{target, condition_on}]}")
                ao = []
            for j, grp in enumerate(ao):
                gat = (*at, "action_optimization", j)
                grp = _norm(grp) if isinstance(grp, dict) else {}
                kind = SAF_KINDS.get(str(grp.get("type")))
                if kind is None:
                    p.add(where(*gat, "type"), f"unknown action optimization {grp.get('type')!r}: expected gating, "
                                               "skipping or skipping_spatial")
                    continue
                opts = grp.get("options")
                if opts is None:
                    opts = [grp]
                if not isinstance(opts, list) or not opts:
                    p.add(where(*gat, "options"), "expected a non-empty list of {target, condition_on}")
                    continue
                options = []
                for k, o in enumerate(opts):
                    oat = (*gat, "options", k) if "options" in grp else gat
                    o = _norm(o) if isinstance(o, dict) else {}
                    tgt, cond = o.get("target"), o.get("condition_on")
                    if tgt not in ds_names:
                        p.add(where(*oat, "target"), f"unknown target dataspace {tgt!r}; dataspaces are {ds_names}")
                        continue
                    if not isinstance(cond, list) or not cond:
                        p.add(where(*oat, "condition_on"), "expected a non-empty list of dataspaces "
                                                           "(Timeloop requires a list)")
                        continue
                    bad = [c for c in cond if c not in ds_names]
                    if bad:
                        p.add(where(*oat, "condition_on"), f"unknown dataspace(s) {bad}; dataspaces are {ds_names}")
                        continue
                    options.append((ds_names.index(tgt), tuple(ds_names.index(c) for c in cond)))
                if options and len(options) == len(opts):
                    if kind == "skipping_spatial" and len(options) != 1:
                        p.add(where(*gat, "options"), "skipping_spatial takes exactly one option")
                        continue
                    if kind == "skipping_spatial" and len(options[0][1]) != 1:
                        p.add(where(*gat, "condition_on"), "skipping_spatial takes exactly one condition_on "
                                                           "dataspace (Timeloop's multi-leader spatial analysis "
                                                           "is unreliable; docs/spatial_skipping.md)")
                        continue
                    safs.append(Saf(li, kind, tuple(options)))
    p.raise_if_any()
    for s in safs:
        for tgt, cond in s.options:
            if tgt in cond:
                p.add(where("sparse_optimizations"), f"{ds_names[tgt]} conditioned on itself at {lv_names[s.level]}")
    spatial = [(s.level, s.options[0][0]) for s in safs if s.kind == "skipping_spatial"]
    temporal = {(s.level, tgt) for s in safs if s.kind != "skipping_spatial" for tgt, _ in s.options}
    for lt in sorted(set(spatial)):
        name = f"{ds_names[lt[1]]} at {lv_names[lt[0]]}"
        if spatial.count(lt) > 1:
            p.add(where("sparse_optimizations"), f"{name} has more than one skipping_spatial option")
        if lt in temporal:
            p.add(where("sparse_optimizations"), f"{name} has both skipping_spatial and gating/skipping "
                                                 "(Timeloop does not support both on one level and dataspace)")
    p.raise_if_any()
    dec = tuple(bool(lv.attributes.get("decompression_supported", False)) for lv in arch.levels)
    com = tuple(bool(lv.attributes.get("compression_supported", False)) for lv in arch.levels)
    return SparseSpec(dens, formats, tuple(safs), gate, skip, dec, com)
