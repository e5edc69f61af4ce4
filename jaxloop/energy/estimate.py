"""ERT and ART from an architecture's component classes and attributes (Accelergy-compatible).

    table = estimate_tables(yaml.safe_load(open("input.yaml")))
    table.energy["shared_glb"]["read"]   # pJ per action
    table.area["shared_glb"]             # um^2 per instance
    write_ert(table, "ERT.yaml"); write_art(table, "ART.yaml")

Components are read from `architecture` (a `subtree` of `local` components; a subtree's
`attributes` are inherited by everything below it). A component's class is its `subclass`
if it has one (Timeloop v4: `class: storage, subclass: smartbuffer_RF`), else its `class`.
Compound classes come from `compound_components.classes`, then from the built-in library
(`library.py`); anything else is a primitive estimated by hwcomponents (`primitives.py`).
"""

import json
from pathlib import Path

from jaxloop.energy.attrs import Attributes, split_range
from jaxloop.energy.compound import Node
from jaxloop.energy.ert import EnergyTable
from jaxloop.energy.library import builtin_classes
from jaxloop.energy.primitives import DEFAULT_CYCLE_SECONDS
from jaxloop.errors import SpecError
from jaxloop.spec.yamlio import plain

STORAGE_ACTIONS = ("read", "write", "update", "leak")
COMPUTE_ACTIONS = ("compute", "leak")
COMPUTE_CLASSES = ("intmac", "fpmac", "aladdin_mac", "mac")


def compound_classes(doc):
    """Built-in compound classes overridden by the input's `compound_components.classes`."""
    classes = dict(builtin_classes())
    cc = doc.get("compound_components") or {}
    listed = cc.get("classes") if isinstance(cc, dict) else cc
    for i, c in enumerate(listed or []):
        if not isinstance(c, dict) or not c.get("name"):
            raise SpecError(f"compound_components.classes[{i}]: expected a mapping with a name")
        classes[c["name"]] = c
    return classes


def architecture_components(doc):
    """[(name, class, raw attribute dict, component dict)] with subtree attributes inherited."""
    arch = doc.get("architecture")
    if not isinstance(arch, dict):
        raise SpecError("architecture: missing (expected a mapping with a 'subtree' list)")
    out = []

    def walk(tree, inherited, where):
        if not isinstance(tree, dict):
            raise SpecError(f"{where}: expected a mapping")
        attrs = {**inherited, **(tree.get("attributes") or {})}
        for i, comp in enumerate(tree.get("local") or []):
            if not isinstance(comp, dict) or "name" not in comp:
                raise SpecError(f"{where}.local[{i}]: expected a mapping with a name")
            cls = comp.get("subclass") or comp.get("class")
            if not cls:
                raise SpecError(f"{where}.local[{i}] ({comp['name']}): missing 'class'")
            own = comp.get("attributes") or {}
            if not isinstance(own, dict):
                raise SpecError(f"{where}.local[{i}] ({comp['name']}): attributes must be a mapping")
            out.append((comp["name"], cls, {**attrs, **own}, comp))
        for i, sub in enumerate(tree.get("subtree") or []):
            walk(sub, attrs, f"{where}.subtree[{i}]")

    if "subtree" not in arch and "local" not in arch:
        raise SpecError("architecture: expected 'subtree' or 'local' (Timeloop v0.3/v0.4 tree format)")
    walk(arch, {}, "architecture")
    return out


def _generic_class(cls, attrs):
    """Timeloop's generic `storage`/`compute` classes without a subclass."""
    if cls == "compute":
        return "intmac"
    if cls != "storage":
        return cls
    depth, width = attrs.get("depth"), attrs.get("width")  # Attributes: evaluated values
    if depth is None:
        return "DRAM"
    if isinstance(depth, (int, float)) and isinstance(width, (int, float)) and depth * width >= 512:
        return "SRAM"  # CACTI's smallest array is 64 bytes
    return "regfile"


def _wanted_actions(node, comp):
    """Actions to list: the compound's own, or the usual ones of a primitive's kind."""
    have = node.action_names()
    if node.is_compound:
        wanted = list(have)
    elif node.cls.lower() in COMPUTE_CLASSES:
        wanted = [a for a in COMPUTE_ACTIONS if a in have]
    elif {"read", "write"} <= set(have):
        wanted = [a for a in STORAGE_ACTIONS if a in have]
    else:
        wanted = [a for a in have if a != "idle"]
    for a in comp.get("required_actions") or []:
        if a not in have:
            raise SpecError(f"{node.where}: required action {a!r} is not defined (has: {', '.join(have)})")
        if a not in wanted:
            wanted.append(a)
    return wanted


def estimate_tables(doc):
    """EnergyTable (pJ per action, um^2 per instance, provenance) for every component of `doc`."""
    if not isinstance(doc, dict):
        raise SpecError("expected the input document as a mapping")
    doc = plain(doc)  # ruamel's round-trip containers and scalars -> plain Python
    classes = compound_classes(doc)
    variables = Attributes("variables")  # top-level `variables:`, visible to every expression
    for k, v in (doc.get("variables") if isinstance(doc.get("variables"), dict) else {}).items():
        variables.set(k, v)
    table = EnergyTable()
    for name, cls, raw, comp in architecture_components(doc):
        base, _, _ = split_range(name, None, f"architecture: {name}")
        if base in table.energy:
            raise SpecError(f"architecture: two components are named {base!r}")
        attrs = Attributes(f"{base} ({cls})", variables=variables)
        for k, v in raw.items():
            attrs.set(k, v)
        attrs.setdefault("global_cycle_seconds", DEFAULT_CYCLE_SECONDS)  # Timeloop's default clock
        if str(cls).lower() in ("analog_crossbar", "analog_mac"):  # converters and cells: jaxloop/energy/analog.py
            from jaxloop.energy.analog import analog_component

            resolved = {k: (v if isinstance(v, (dict, list)) else attrs[k]) for k, v in raw.items()}
            resolved.setdefault("global_cycle_seconds", attrs["global_cycle_seconds"])
            table.energy[base], table.area[base], table.source[base] = analog_component(
                cls, resolved, f"architecture: {base}")
            continue
        generic = _generic_class(cls, attrs)
        node = Node(base, generic, attrs, classes)
        actions = _wanted_actions(node, comp)
        table.energy[base] = {a: node.energy(a) for a in actions}
        table.area[base] = node.area()
        table.source[base] = _source(node, cls, generic)
    return table


def _source(node, cls, generic):
    note = f" ({cls} treated as {generic})" if generic != cls else ""
    if not node.is_compound:
        return node.primitive()["source"] + note
    parts = ", ".join(f"{k}={v.split(' ')[0].removeprefix('hwcomponents:')}" for k, v in node.sources().items())
    return f"hwcomponents:compound {node.cls} [{parts}]{note}"


# --- Accelergy-shaped output -----------------------------------------------------------


def _num(x):
    return repr(float(x))


def write_ert(table, path, version="0.4"):
    """Write `table.energy` as an Accelergy ERT.yaml (readable by Timeloop and load_tables)."""
    lines = ["ERT:", f"  version: '{version}'", "  tables:"]
    for comp, actions in table.energy.items():
        lines.append(f"  - name: {json.dumps(comp)}")
        if comp in table.source:
            lines.append(f"    # source: {table.source[comp]}")
        lines.append("    actions:")
        for action, energy in actions.items():
            lines.append(f"    - name: {json.dumps(action)}")
            lines.append(f"      energy: {_num(energy)}")
    Path(path).write_text("\n".join(lines) + "\n")


def write_art(table, path, version="0.4"):
    """Write `table.area` as an Accelergy ART.yaml."""
    lines = ["ART:", f"  version: '{version}'", "  tables:"]
    for comp, area in table.area.items():
        lines.append(f"  - name: {json.dumps(comp)}")
        lines.append(f"    area: {_num(area)}")
    Path(path).write_text("\n".join(lines) + "\n")
