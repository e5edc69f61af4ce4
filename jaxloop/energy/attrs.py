"""Attributes of one component, resolved lazily the way Accelergy does.

An `Attributes` holds raw values (numbers, strings, expressions) and resolves each on first
use, so defaults may refer to each other in any order (`widthscale: width / memory_width`,
`memory_width: max(32, width)`). Cycles and `must_specify` placeholders raise SpecError
naming the component and the attribute.
"""

import re

from jaxloop.energy.expr import ExprError, attribute_value, evaluate
from jaxloop.errors import SpecError

MUST_SPECIFY = "must_specify"

# Attributes that a compound component hands down to its subcomponents when they do not set
# them themselves (Accelergy: the technology and the clock are global to a component tree).
INHERITED_BY_SUBCOMPONENTS = ("technology", "global_cycle_seconds", "voltage", "tech_node", "cycle_period")

_RANGE = re.compile(r"^\s*(?P<base>[^\[\]]+?)\s*(\[(?P<inner>.*)\])?\s*$")


class Inherit:
    """Raw value meaning "whatever `parent[key]` resolves to"."""

    def __init__(self, parent, key):
        self.parent, self.key = parent, key

    def __repr__(self):
        return f"Inherit({self.parent.where!r}, {self.key!r})"


class Attributes:
    """Raw attribute values of `where` (a 'name (class)' label), resolved on demand.

    Values set with `outer_first=True` are expressions written in a parent's context
    (subcomponent attributes inside a compound class): their names resolve in `outer`
    first, then among this component's own attributes. `variables` is the last fallback.
    """

    def __init__(self, where, outer=None, variables=None):
        self.where = where
        self.outer = outer
        self.variables = variables or {}
        self._raw = {}  # name -> (raw value, outer_first)
        self._values = {}
        self._busy = set()

    def set(self, name, raw, outer_first=False):
        self._raw[name] = (raw, outer_first)
        self._values.pop(name, None)

    def setdefault(self, name, raw, outer_first=False):
        if name not in self._raw:
            self.set(name, raw, outer_first)

    def __contains__(self, name):
        return name in self._raw

    def names(self):
        return list(self._raw)

    def raw(self, name):
        return self._raw[name][0]

    def get(self, name, default=None):
        return self[name] if name in self._raw else default

    def __getitem__(self, name):
        if name in self._values:
            return self._values[name]
        if name not in self._raw:
            raise KeyError(name)
        raw, outer_first = self._raw[name]
        if isinstance(raw, Inherit):
            value = self._values[name] = raw.parent[raw.key]
            return value
        if isinstance(raw, str) and raw.strip() == MUST_SPECIFY:
            raise SpecError(f"{self.where}: attribute '{name}' must be specified (its class marks it must_specify)")
        if name in self._busy:
            raise SpecError(f"{self.where}: attribute '{name}' is defined in terms of itself "
                            f"(or names a parent attribute that is not defined)")
        self._busy.add(name)
        try:
            value = attribute_value(raw, self._lookup_outer_first if outer_first else self._lookup_own)
        except ExprError as e:
            raise SpecError(f"{self.where}: attribute '{name}': {e}") from None
        finally:
            self._busy.discard(name)
        self._values[name] = value
        return value

    def _lookup_own(self, name):
        if name in self._raw:
            return self[name]
        return self.variables[name]

    def _lookup_outer_first(self, name):
        if self.outer is not None and name in self.outer:
            return self.outer[name]
        return self._lookup_own(name)

    def lookup(self, name):
        """Name lookup for expressions evaluated in this component's context."""
        return self._lookup_own(name)

    def evaluate(self, text, what, extra=None):
        """Evaluate expression `text` (e.g. an energy_scale) in this component's context."""
        def lookup(name):
            return extra[name] if extra and name in extra else self.lookup(name)
        try:
            return attribute_value(text, lookup)
        except ExprError as e:
            raise SpecError(f"{self.where}: {what}: {e}") from None

    def resolved(self):
        """All attributes as plain values (every one is evaluated)."""
        return {k: self[k] for k in self._raw}


def split_range(name, attrs=None, where=""):
    """'storage[1..width*depth]' -> ('storage', lo, hi); 'adder[1]' -> ('adder', 1, 1);
    'storage' -> ('storage', None, None). Bounds may be expressions over `attrs`."""
    m = _RANGE.match(str(name))
    if not m:
        raise SpecError(f"{where}: cannot read component name {name!r}")
    base, inner = m.group("base"), m.group("inner")
    if inner is None:
        return base, None, None
    parts = inner.split("..")
    if len(parts) not in (1, 2):
        raise SpecError(f"{where}: bad index range in {name!r} (expected [lo..hi] or [i])")
    bounds = []
    for p in parts:
        try:
            v = evaluate(p, attrs.lookup if attrs is not None else None)
        except (ExprError, SpecError) as e:
            raise SpecError(f"{where}: index range of {name!r}: {e}") from None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise SpecError(f"{where}: index range of {name!r} must be integers, got {v!r}")
        bounds.append(v)
    lo, hi = bounds[0], bounds[-1]
    if hi < lo:
        raise SpecError(f"{where}: empty index range in {name!r} ({lo}..{hi})")
    return base, lo, hi


def range_count(lo, hi):
    return 1 if lo is None else hi - lo + 1
