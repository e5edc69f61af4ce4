"""Primitive components: Accelergy class + attributes -> hwcomponents model -> pJ and um^2.

`estimate_primitive(cls, attrs, where)` returns {"actions": {action: pJ}, "area": um^2,
"source": provenance} and caches it on disk (`cache.py`), so a primitive seen before costs
one small file read. Known Accelergy classes map onto specific hwcomponents models with
Accelergy's attribute names and defaults (`CLASSES`); any other class name goes to
hwcomponents' own model selection. Leak energy per cycle = leak power x global_cycle_seconds.
"""

import inspect
import re
import sys

from jaxloop.energy import cache
from jaxloop.errors import SpecError

DEFAULT_CYCLE_SECONDS = 1e-9
DRAM_DEFAULT_TYPE = "LPDDR4"  # Accelergy's primitive library default

_messages = set()


def _note(msg):
    """Print `msg` on stderr once per process."""
    if msg not in _messages:
        _messages.add(msg)
        print(f"jaxloop: {msg}", file=sys.stderr)


def tech_node_m(value, where):
    """'45nm' / '45 nm' / 45 / 4.5e-8 / '0.045um' -> metres."""
    v = value
    if v is None:
        raise SpecError(f"{where}: attribute 'technology' is missing (e.g. technology: 45nm)")
    if isinstance(v, str):
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(nm|um|m)?\s*", v)
        if not m:
            raise SpecError(f"{where}: attribute 'technology': cannot read {value!r} as a technology node (e.g. 45nm)")
        try:
            num = float(m.group(1))
        except ValueError:
            raise SpecError(f"{where}: attribute 'technology': cannot read {value!r} as a technology node") from None
        unit = m.group(2)
        v = num * {"nm": 1e-9, "um": 1e-6, "m": 1.0}[unit] if unit else num
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise SpecError(f"{where}: attribute 'technology': cannot read {value!r} as a technology node (e.g. 45nm)")
    v = float(v)
    return v * 1e-9 if v >= 1 else v  # bare numbers >= 1 are nanometres


def _number(attrs, key, where, default=None, required=False):
    v = attrs.get(key, default)
    if v is None:
        if required:
            raise SpecError(f"{where}: attribute '{key}' is required")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{where}: attribute '{key}' must be a number, got {v!r}")
    return v


def _first(attrs, keys, default=None):
    for k in keys:
        if attrs.get(k) is not None:
            return attrs[k]
    return default


def _init(model_cls, kwargs, where):
    """Construct `model_cls` with the keyword arguments it accepts out of `kwargs`."""
    params = inspect.signature(model_cls.__init__).parameters
    accepted = {k: v for k, v in kwargs.items() if k in params and v is not None}
    missing = [
        p.name for p in params.values()
        if p.name != "self" and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in accepted
    ]
    if missing:
        names = ["technology" if m == "tech_node" else m for m in missing]
        raise SpecError(f"{where}: attribute '{names[0]}' is required by hwcomponents model {model_cls.__name__}")
    try:
        return model_cls(**accepted)
    except SpecError:
        raise
    except Exception as e:  # the models raise ValueError/AssertionError/TypeError on bad attributes
        raise SpecError(f"{where}: hwcomponents model {model_cls.__name__} rejected {accepted}: {e}") from None


# --- builders: (attrs, where) -> (model, source) ------------------------------------------


def _with_tech(attrs, where, extra):
    return {"tech_node": tech_node_m(attrs.get("technology", attrs.get("tech_node")), where), **extra}


def _aladdin(model_name, width_keys=("width", "datawidth"), default_width=32):
    def build(attrs, where):
        from hwcomponents_library.library import aladdin

        model_cls = getattr(aladdin, model_name)
        kw = dict(attrs)
        if model_name != "AladdinMultiplier" or not (attrs.get("width_a") or attrs.get("width_b")):
            kw["width"] = _first(attrs, width_keys, default_width)
        return _init(model_cls, _with_tech(attrs, where, kw), where), f"hwcomponents:library/{model_name}"

    return build


def _intmac(attrs, where):
    from hwcomponents_library.library.aladdin import AladdinIntMAC

    w = _first(attrs, ("width", "datawidth"), 16)
    kw = {
        "adder_width": _first(attrs, ("adder_width",), w),
        "multiplier_width": _first(attrs, ("multiplier_width",), w),
    }
    return _init(AladdinIntMAC, _with_tech(attrs, where, kw), where), "hwcomponents:library/AladdinIntMAC"


def _sram(attrs, where):
    from jaxloop.energy import cacti

    width = _number(attrs, "width", where, required=True)
    depth = _number(attrs, "depth", where, required=True)
    if width * depth == 0:
        return _dummy("DummyStorage")(attrs, where)[0], "hwcomponents:library/DummyStorage (zero-size SRAM)"
    ports = _first(attrs, ("n_rw_ports",), None)
    if ports is None:
        ports = sum(int(attrs.get(k) or 0) for k in ("n_rdwr_ports", "n_rd_ports", "n_wr_ports")) or 1
    kw = _with_tech(attrs, where, {
        "width": width, "depth": depth, "size": width * depth,
        "n_rw_ports": int(ports), "n_banks": int(_number(attrs, "n_banks", where, 1)),
    })
    directory = cacti.cacti_dir()
    if directory is None:
        from jaxloop.energy.models import TableSRAM

        _note(f"CACTI unavailable ({cacti.unavailable_reason()}); SRAM energies come from a table model")
        kw.pop("size")
        return _init(TableSRAM, kw, where), "hwcomponents:jaxloop/TableSRAM (CACTI unavailable)"
    from jaxloop.energy.models import NodeExactSRAM

    with cacti.using_cacti(directory):
        model = _init(NodeExactSRAM, kw, where)
        model.read(), model.write()  # run CACTI now, inside the context
    return model, "hwcomponents:cacti/SRAM (CACTI run at the exact node)"


def _dram(attrs, where):
    import hwcomponents_cacti.hwcomponents_cacti as hc

    kind = str(attrs.get("type") or DRAM_DEFAULT_TYPE)
    model_cls = {c.__name__: c for c in (hc.LPDDR4, hc.LPDDR, hc.DDR3, hc.HBM2, hc.HBM3, hc.HBM4)}.get(kind.upper())
    if model_cls is None:
        raise SpecError(
            f"{where}: attribute 'type': DRAM type {kind!r} is not supported by hwcomponents-cacti "
            f"(use LPDDR4, LPDDR, DDR3, HBM2, HBM3 or HBM4)"
        )
    width = _number(attrs, "width", where, required=True)
    model = model_cls()  # the model's native bus width; energy is per bit
    model.bits_per_action = width
    note = "" if attrs.get("type") else f", type defaulted to {DRAM_DEFAULT_TYPE}"
    return model, f"hwcomponents:cacti/{model_cls.__name__} (pJ/bit x {width} bit{note})"


def _dummy(model_name):
    def build(attrs, where):
        from hwcomponents_library.library import dummy

        return getattr(dummy, model_name)(), f"hwcomponents:library/{model_name}"

    return build


def _jaxloop_model(model_name, kwarg_keys):
    def build(attrs, where):
        from jaxloop.energy import models

        kw = {k: _first(attrs, keys) for k, keys in kwarg_keys.items()}
        model_cls = getattr(models, model_name)
        return _init(model_cls, _with_tech(attrs, where, kw), where), f"hwcomponents:jaxloop/{model_name} (Horowitz ISSCC'14 table)"

    return build


def _generic(cls, attrs, where):
    """Any other class: hwcomponents' own model selection over all installed plug-ins."""
    import hwcomponents

    kw = dict(attrs)
    if "technology" in attrs and "tech_node" not in attrs:
        kw["tech_node"] = tech_node_m(attrs["technology"], where)
    if "global_cycle_seconds" in attrs and "cycle_period" not in attrs:
        kw["cycle_period"] = attrs["global_cycle_seconds"]
    try:
        model = hwcomponents.get_model(cls, kw)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(" Supported components")[0]
        raise SpecError(f"{where}: unknown component class {cls!r}: not a compound class of the input or of "
                        f"jaxloop's library, and no hwcomponents model accepts it ({first[:200]}; "
                        f"`hwc --list` shows the available models)") from None
    return model, f"hwcomponents:{type(model).__module__.split('.')[0]}/{type(model).__name__}"


_FP = {"exponent": ("exponent",), "mantissa": ("mantissa",), "width": ("width", "datawidth")}
CLASSES = {
    "sram": _sram,
    "dram": _dram,
    "intmac": _intmac,
    "intadder": _aladdin("AladdinAdder", ("width", "n_bits", "precision", "datawidth")),
    "intmultiplier": _aladdin("AladdinMultiplier", ("width", "n_bits", "precision", "datawidth")),
    "aladdin_adder": _aladdin("AladdinAdder"),
    "aladdin_multiplier": _aladdin("AladdinMultiplier"),
    "aladdin_comparator": _aladdin("AladdinComparator"),
    "aladdin_counter": _aladdin("AladdinCounter"),
    "aladdin_register": _aladdin("AladdinRegister", default_width=1),
    "aladdin_mac": _intmac,
    "dummy_storage": _dummy("DummyStorage"),
    "dummy_compute": _dummy("DummyCompute"),
    "dummy_memory": _dummy("DummyMemory"),
    "dummy_network": _dummy("DummyNetwork"),
    "fpadder": _jaxloop_model("FPAdder", _FP),
    "fpmultiplier": _jaxloop_model("FPMultiplier", _FP),
    "fpmac": _jaxloop_model("FPMAC", {"multiplier_width": ("multiplier_width", "datawidth", "width"),
                                      "adder_width": ("adder_width", "datawidth", "width")}),
}
STORAGE_LIKE = ("sram", "dram", "aladdin_register", "dummy_storage", "dummy_memory")


def _cost_table(model, attrs, where):
    """Energy of every action the model has (pJ), plus leak, update and idle."""
    cycle = _number(attrs, "global_cycle_seconds", where, DEFAULT_CYCLE_SECONDS)
    bits = getattr(model, "bits_per_action", None)
    actions = {}
    for name in model.get_action_names():
        try:
            cost = getattr(model, name)(bits_per_action=bits) if bits else getattr(model, name)()
        except TypeError:
            continue  # the action needs arguments we do not have
        actions[name] = float(cost.energy) * 1e12
    actions["leak"] = float(model.leak_power) * float(cycle) * 1e12
    if "write" in actions:
        actions.setdefault("update", actions["write"])
    actions.setdefault("idle", actions["leak"])
    return actions


def estimate_primitive(cls, attrs, where):
    """{"actions": {action: pJ}, "area": um^2, "source": str} of primitive `cls` with `attrs`."""
    key = cache.make_key("primitive", cls.lower(), attrs)
    hit = cache.get(key)
    if hit is not None:
        return hit
    result = compute_primitive(cls, attrs, where)
    if "unavailable" not in result["source"]:  # never cache a fallback as if it were the real model
        cache.put(key, result)
    return result


def compute_primitive(cls, attrs, where):
    """The uncached estimate (this is where hwcomponents is called)."""
    build = CLASSES.get(cls.lower())
    if build is None:
        model, source = _generic(cls, attrs, where)
    else:
        model, source = build(attrs, where)
    try:
        actions = _cost_table(model, attrs, where)
        area = float(model.area) * 1e12
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"{where}: hwcomponents model {type(model).__name__} failed: {e}") from None
    return {"actions": actions, "area": area, "source": source}
