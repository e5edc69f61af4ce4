"""Architecture: storage levels (innermost first, like Timeloop's stats) above one compute level.

Reads Timeloop's v0.3/v0.4 tree (`subtree` / `local`, `name[1..N]` instance ranges,
meshX/meshY) as timeloopfe dumps it; attributes follow Timeloop's BufferLevel::ParseSpecs.
"""

import re
from dataclasses import dataclass, field
from math import prod

from jaxloop.errors import Problems

COMPUTE_CLASSES = ("intmac", "fpmac", "mac", "compute", "aladdin_mac", "mac_unit", "crossbar")
_RANGE = re.compile(r"^(?P<name>[^\[\]]+)(\[(?P<lo>\d+)\.\.(?P<hi>\d+)\])?$")
_UNLIMITED = float("inf")


@dataclass(frozen=True)
class StorageLevel:
    name: str
    cls: str
    instances: int
    mesh_x: int
    mesh_y: int
    word_bits: int = 16
    block_size: int = 1
    cluster_size: int = 1
    size: float = _UNLIMITED  # words; inf = unbounded (DRAM)
    multiple_buffering: float = 1.0
    min_utilization: float = 0.0
    read_bandwidth: float = _UNLIMITED  # words/cycle per instance
    write_bandwidth: float = _UNLIMITED
    shared_bandwidth: float = _UNLIMITED
    reduction_supported: bool = True
    is_dram: bool = False
    attributes: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def effective_size(self):
        return self.size if self.size == _UNLIMITED else float(int(self.size // self.multiple_buffering))


@dataclass(frozen=True)
class ComputeLevel:
    name: str
    cls: str
    instances: int
    mesh_x: int
    mesh_y: int
    word_bits: int = 16
    attributes: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Arch:
    levels: tuple  # StorageLevel, index 0 = innermost (next to the MACs)
    compute: ComputeLevel
    raw: dict = field(default_factory=dict, compare=False, hash=False)  # the architecture section as read

    @property
    def names(self):
        return tuple(lv.name for lv in self.levels)

    def fanout(self, i):
        """(X, Y) spatial fan-out just below storage level i (to level i-1 or the MACs)."""
        child = self.levels[i - 1] if i > 0 else self.compute
        me = self.levels[i]
        return child.mesh_x // me.mesh_x, child.mesh_y // me.mesh_y

    def level_index(self, name):
        return self.names.index(name)


NUMERIC = ("depth", "memory_depth", "data_storage_depth", "width", "memory_width", "data_storage_width",
           "datawidth", "word_bits", "word_width", "block_size", "n_words", "cluster_size", "entries", "sizeKB",
           "read_bandwidth", "write_bandwidth", "shared_bandwidth", "bandwidth", "meshX", "meshY",
           "multiple_buffering", "min_utilization")


def resolve_attributes(attrs, variables, where, p, keys=NUMERIC):
    """Evaluate Accelergy-style expressions (`max(PSUM_DATAWIDTH, 16)`) in the attributes
    `keys` the model reads, over the component's other attributes and the input's `variables`."""
    from jaxloop.energy.expr import ExprError, attribute_value

    out = dict(attrs)

    def lookup(name, depth=0):
        for scope in (out, variables or {}):
            if name in scope:
                v = scope[name]
                return attribute_value(v, lambda n: lookup(n, depth + 1)) if depth < 20 else v
        raise KeyError(name)

    for k in keys:
        if isinstance(out.get(k), str):
            try:
                out[k] = attribute_value(out[k], lookup)
            except (ExprError, KeyError) as e:
                p.add(where, f"attribute {k}: cannot evaluate {out[k]!r} ({e})")
                out.pop(k)
    return out


def _num(v, where, key, p, positive=True):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        p.add(where, f"{key} must be a number, got {v!r}")
        return None
    if positive and v <= 0:
        p.add(where, f"{key} must be positive, got {v!r}")
        return None
    return v


def _storage(name, cls, inst, attrs, where, p):
    a = attrs
    get = lambda *keys: next((a[k] for k in keys if a.get(k) is not None), None)  # noqa: E731
    wb = get("word_bits", "word_width", "datawidth")
    wb = 16 if wb is None else _num(wb, where, "datawidth", p) or 16
    width = get("width", "memory_width", "data_storage_width")
    block = get("block_size", "n_words")
    cluster = get("cluster_size") or 1
    if width is not None and _num(width, where, "width", p):
        if block is not None:
            cluster = max(1, int(width // (wb * block)))
        else:
            block = max(1, int(width // (cluster * wb)))
    block = int(block or 1)
    size = _UNLIMITED
    is_dram = "dram" in cls.lower() or str(a.get("technology", "")).upper() == "DRAM"
    depth = get("depth", "memory_depth", "data_storage_depth")
    if a.get("entries") is not None:
        size = float(_num(a["entries"], where, "entries", p) or 1)
    elif depth is not None and not is_dram:
        size = float((_num(depth, where, "depth", p) or 1) * block)
    elif a.get("sizeKB") is not None:
        size = float(int(a["sizeKB"] * 1024 * 8 // wb))
    bw = a.get("bandwidth")
    rbw = a.get("read_bandwidth", bw / 2 if bw else None)
    wbw = a.get("write_bandwidth", bw / 2 if bw else None)
    sbw = a.get("shared_bandwidth")
    mesh_x, mesh_y = int(a.get("meshX") or inst), int(a.get("meshY") or 1)
    if mesh_x * mesh_y != inst:
        p.add(where, f"meshX*meshY = {mesh_x}*{mesh_y} does not equal the {inst} instances of {name}")
    return StorageLevel(
        name=name, cls=cls, instances=inst, mesh_x=mesh_x, mesh_y=mesh_y, word_bits=int(wb),
        block_size=block, cluster_size=int(cluster), size=size,
        multiple_buffering=float(a.get("multiple_buffering") or 1.0),
        min_utilization=float(a.get("min_utilization") or 0.0),
        read_bandwidth=float(rbw) if rbw else _UNLIMITED,
        write_bandwidth=float(wbw) if wbw else _UNLIMITED,
        shared_bandwidth=float(sbw) if sbw else _UNLIMITED,
        reduction_supported=bool(a.get("reduction_supported", not is_dram)),
        is_dram=is_dram, attributes=dict(a),
    )


def nodes_to_tree(arch, where):
    """timeloopfe's v0.4 `nodes` list -> the v0.3 `subtree`/`local` form Timeloop runs on.

    Containers nest everything after them and pass their attributes down; a container with a
    spatial mesh becomes a `dummy_storage` level `inter_<name>_spatial` (at the parent's
    instance count) that carries the fan-out, as timeloopfe's v4-to-v3 transpiler does.
    """
    p = Problems()
    local = []
    state = {"attrs": {}, "mx": 1, "my": 1}

    def walk(nodes, path):
        for i, node in enumerate(nodes or []):
            at = (*path, i)
            tag = node.get("_tag") if isinstance(node, dict) else None
            if isinstance(node, dict) and (tag == "!Parallel" or ("nodes" in node and "name" not in node)):
                walk(node.get("nodes"), (*at, "nodes"))  # !Parallel: siblings become successive levels
                continue
            if tag == "!Nothing":  # a placeholder branch of a !Parallel; it holds no hardware
                continue
            if not isinstance(node, dict) or "name" not in node:
                p.add(where(*at), "expected a !Container or !Component with a name")
                continue
            tag = tag or ("!Component" if "class" in node else "!Container")
            mx, my = state["mx"], state["my"]
            if tag == "!Container":
                state["attrs"] = attrs = {**state["attrs"], **(node.get("attributes") or {})}
                sp = node.get("spatial") or {}
                fx, fy = int(sp.get("meshX", 1)), int(sp.get("meshY", 1))
                if fx * fy > 1:
                    local.append({"name": f"inter_{node['name']}_spatial[1..{mx * my}]", "class": "dummy_storage",
                                  "attributes": {**attrs, "width": 1, "depth": 1, "datawidth": 1,
                                                 "meshX": mx, "meshY": my}})
                    state["mx"], state["my"] = mx * fx, my * fy
            elif tag == "!Component":
                if "class" not in node:
                    p.add(where(*at), f"component {node['name']!r} has no class")
                    continue
                local.append({"name": f"{node['name']}[1..{mx * my}]", "class": node["class"],
                              "attributes": {**state["attrs"], **(node.get("attributes") or {}),
                                             "meshX": mx, "meshY": my}})
            else:
                p.add(where(*at), f"unsupported node type {tag} (jaxloop reads !Container, !Component, !Parallel)")

    walk(arch.get("nodes"), ("architecture", "nodes"))
    p.raise_if_any()
    return {"version": arch.get("version"), "subtree": [{"name": "system", "local": local}]}


def parse_arch(arch, where, variables=None):
    """Timeloop `architecture:` section -> Arch. Errors name file, line and key path.
    `variables` is the input's top-level `variables:` section (names used in expressions)."""
    p = Problems()
    variables = variables or {}
    if isinstance(arch, dict) and arch.get("nodes") and not arch.get("subtree"):
        arch = nodes_to_tree(arch, where)
    if not isinstance(arch, dict) or not (arch.get("subtree") or arch.get("local")):
        p.add(where("architecture"), "expected 'subtree' (Timeloop v0.3/v0.4 tree) with 'local' components")
        p.raise_if_any()
    leaves = []  # (name, class, instances, attributes, path)

    def walk(node, mult, inherited, path):
        m = _RANGE.match(str(node.get("name", "")).strip()) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get("name") is not None and not m:
            p.add(where(*path, "name"), f"bad name {node.get('name')!r}: expected name or name[lo..hi]")
            return
        count = int(m["hi"]) - int(m["lo"]) + 1 if m and m["lo"] else 1
        attrs = {**inherited, **(node.get("attributes") or {})}
        for i, leaf in enumerate(node.get("local") or []):
            at = (*path, "local", i)
            if not isinstance(leaf, dict) or "name" not in leaf or "class" not in leaf:
                p.add(where(*at), "expected a component with 'name' and 'class'")
                continue
            lm = _RANGE.match(str(leaf["name"]).strip())
            if not lm:
                p.add(where(*at, "name"), f"bad name {leaf['name']!r}: expected name or name[lo..hi]")
                continue
            n = int(lm["hi"]) - int(lm["lo"]) + 1 if lm["lo"] else 1
            la = resolve_attributes({**attrs, **(leaf.get("attributes") or {})}, variables, where(*at, "attributes"), p)
            leaves.append((lm["name"], str(leaf["class"]), n * mult * count, la, at))
        for i, sub in enumerate(node.get("subtree") or []):
            walk(sub, mult * count, attrs, (*path, "subtree", i))

    walk(arch, 1, {}, ("architecture",))
    p.raise_if_any()
    if not leaves:
        p.add(where("architecture"), "no components found")
        p.raise_if_any()
    *stores, comp = leaves
    name, cls, inst, attrs, at = comp
    if not any(c in cls.lower() for c in COMPUTE_CLASSES) and "depth" in attrs:
        p.add(where(*at), f"the innermost component {name!r} (class {cls}) must be the compute unit (e.g. intmac)")
    wb = attrs.get("datawidth") or attrs.get("word_bits") or 16
    compute = ComputeLevel(name, cls, inst, int(attrs.get("meshX") or inst), int(attrs.get("meshY") or 1),
                           int(wb) if isinstance(wb, (int, float)) else 16, dict(attrs))
    levels = [_storage(n, c, i, a, where(*w), p) for n, c, i, a, w in reversed(stores)]
    names = [lv.name for lv in levels] + [compute.name]
    if len(set(names)) != len(names):
        p.add(where("architecture"), f"component names must be unique, got {names}")
    if not levels:
        p.add(where("architecture"), "at least one storage level is needed above the compute unit")
    p.raise_if_any()
    result = Arch(tuple(levels), compute)
    for i in range(len(levels)):
        child = levels[i - 1] if i else compute
        me = levels[i]
        if child.mesh_x % me.mesh_x or child.mesh_y % me.mesh_y:
            p.add(where("architecture"), f"mesh of {child.name} ({child.mesh_x}x{child.mesh_y}) is not a multiple "
                                         f"of the mesh of its parent {me.name} ({me.mesh_x}x{me.mesh_y})")
    p.raise_if_any()
    return result


def total_fanout(arch):
    return prod(arch.fanout(i)[0] * arch.fanout(i)[1] for i in range(len(arch.levels)))
