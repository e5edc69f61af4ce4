"""Accelergy compound components: expand classes into primitives and add up their costs.

A compound class has `attributes` (defaults, possibly expressions or `must_specify`),
`subcomponents` (name with an optional [lo..hi] instance range, class, attributes written
in the parent's terms, optional `area_scale`), and `actions`, each a list of subcomponent
actions with optional `energy_scale` and `repeat` (or the older `action_share`).

    energy(action) = sum over listed subcomponent actions of
                     instances named (e.g. storage[1..width] -> width) x repeat x energy_scale
                     x energy(subcomponent, subaction)
    area           = sum over subcomponents of instances x area_scale x area(subcomponent)

Subcomponents inherit the technology and clock of their parent (`INHERITED_BY_SUBCOMPONENTS`)
unless they set them; nothing else is inherited.
"""

from jaxloop.energy.attrs import INHERITED_BY_SUBCOMPONENTS, Attributes, Inherit, range_count, split_range
from jaxloop.energy.primitives import estimate_primitive
from jaxloop.errors import SpecError

MAX_DEPTH = 32  # nesting of compound classes (catches a class that contains itself)


class Node:
    """One (sub)component: a compound class instance or a primitive."""

    def __init__(self, name, cls, attrs, classes, depth=0):
        self.name, self.cls, self.attrs, self.classes = name, cls, attrs, classes
        self.where = attrs.where
        if depth > MAX_DEPTH:
            raise SpecError(f"{self.where}: compound classes nested more than {MAX_DEPTH} deep (a class contains itself?)")
        self.definition = classes.get(cls)
        self.subs = {}  # base name -> (Node, lo, hi, area_scale raw)
        self._primitive = None
        if self.definition is not None:
            if not isinstance(self.definition, dict):
                raise SpecError(f"{self.where}: compound class {cls!r} must be a mapping")
            for k, v in (self.definition.get("attributes") or {}).items():
                attrs.setdefault(k, v)
            for i, sub in enumerate(self.definition.get("subcomponents") or []):
                self._add_sub(sub, i, depth)

    def _add_sub(self, sub, i, depth):
        if not isinstance(sub, dict) or "name" not in sub or "class" not in sub:
            raise SpecError(f"{self.where}: subcomponents[{i}] needs a name and a class")
        base, lo, hi = split_range(sub["name"], self.attrs, self.where)
        sub_attrs = Attributes(f"{self.where} > {base} ({sub['class']})", outer=self.attrs,
                               variables=self.attrs.variables)
        explicit = sub.get("attributes") or {}
        if not isinstance(explicit, dict):
            raise SpecError(f"{sub_attrs.where}: attributes must be a mapping")
        for k, v in explicit.items():
            sub_attrs.set(k, v, outer_first=True)
        for k in INHERITED_BY_SUBCOMPONENTS:
            if k not in sub_attrs and k in self.attrs:
                sub_attrs.set(k, Inherit(self.attrs, k))
        area_scale = sub.get("area_scale", sub.get("area_share", 1))
        self.subs[base] = (Node(base, sub["class"], sub_attrs, self.classes, depth + 1), lo, hi, area_scale)

    @property
    def is_compound(self):
        return self.definition is not None

    def primitive(self):
        if self._primitive is None:
            values = self.attrs.resolved()
            self._primitive = estimate_primitive(self.cls, values, self.where)
        return self._primitive

    def action_names(self):
        if self.is_compound:
            return [a.get("name") for a in self.definition.get("actions") or []]
        return list(self.primitive()["actions"])

    def energy(self, action, arguments=None):
        """Energy of one `action`, pJ."""
        if not self.is_compound:
            table = self.primitive()["actions"]
            if action not in table:
                raise SpecError(f"{self.where}: no action {action!r} (has: {', '.join(table)})")
            e = table[action]
            if action == "leak" and arguments and "global_cycle_seconds" in arguments:
                own = self.attrs.get("global_cycle_seconds") or 1e-9
                e *= float(arguments["global_cycle_seconds"]) / float(own)
            return e
        spec = next((a for a in self.definition.get("actions") or [] if a.get("name") == action), None)
        if spec is None:
            names = ", ".join(str(a.get("name")) for a in self.definition.get("actions") or [])
            raise SpecError(f"{self.where}: class {self.cls!r} has no action {action!r} (has: {names})")
        total = 0.0
        for sa in spec.get("subcomponents") or []:
            node, count = self._find(sa.get("name"), action)
            for sub_action in sa.get("actions") or []:
                what = f"action {action!r} > {sa.get('name')}.{sub_action.get('name')}"
                scale = _num(self.attrs.evaluate(sub_action.get("energy_scale", 1), f"{what} energy_scale"), self.where, what)
                repeat = sub_action.get("repeat", sub_action.get("action_share", 1))
                repeat = _num(self.attrs.evaluate(repeat, f"{what} repeat"), self.where, what)
                args = {k: self.attrs.evaluate(v, f"{what} argument {k}")
                        for k, v in (sub_action.get("arguments") or {}).items()}
                total += count * repeat * scale * node.energy(sub_action.get("name"), args)
        return total

    def _find(self, name, action):
        base, lo, hi = split_range(name, self.attrs, f"{self.where}: action {action!r}")
        if base not in self.subs:
            raise SpecError(f"{self.where}: action {action!r} refers to unknown subcomponent {base!r} "
                            f"(has: {', '.join(self.subs)})")
        node, dlo, dhi = self.subs[base][:3]
        outside = lo is not None and (hi > lo if dlo is None else not (dlo <= lo and hi <= dhi))
        if outside:
            defined = base if dlo is None else f"{base}[{dlo}..{dhi}]"
            raise SpecError(f"{self.where}: action {action!r}: {name} is outside the defined {defined}")
        return node, range_count(lo, hi)

    def area(self):
        """Area of one instance, um^2."""
        if not self.is_compound:
            return self.primitive()["area"]
        total = 0.0
        for base, (node, lo, hi, area_scale) in self.subs.items():
            s = _num(self.attrs.evaluate(area_scale, f"subcomponent {base} area_scale"), self.where, base)
            total += range_count(lo, hi) * s * node.area()
        return total

    def sources(self):
        """{subcomponent path: primitive source} for every primitive below this node."""
        if not self.is_compound:
            return {self.name: self.primitive()["source"]}
        out = {}
        for base, (node, *_rest) in self.subs.items():
            for k, v in node.sources().items():
                out[base if not node.is_compound else f"{base}.{k}"] = v
        return out


def _num(v, where, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{where}: {what}: expected a number, got {v!r}")
    return v
