"""Analog processing-in-memory: the `analog_crossbar` level of a Timeloop-style architecture.

An analog design is an ordinary storage hierarchy whose innermost storage level is a bank of
crossbars (`class: analog_crossbar`, one instance per crossbar) above a compute level of
class `analog_mac` whose instances are the weight positions of the crossbars:

    - name: crossbar[0..7]            # 8 crossbars
      class: analog_crossbar
      attributes: {rows: 128, columns: 128, cell_bits: 2, weight_bits: 16, input_bits: 16,
                   dac_bits: 1, adc_bits: 8, columns_per_adc: 128, activation_cycles: 100, ...}
    - name: cell[0..2047]             # per crossbar: 128 rows x 16 weight columns
      class: analog_mac
      attributes: {meshX: 1024, meshY: 16}

The spatial fan-out of the crossbar level is (rows) x (weight columns): X runs along the rows
(word lines; rows share a column output, so only dimensions that do not index the output may
be mapped there), Y along the weight columns (bit lines; columns share the row input, so
only dimensions that do not index the input). A `W`-bit weight takes
`n_w = ceil(W / (cells_per_slice * cell_bits))` slices, each `cells_per_slice` adjacent cells
wide, so one crossbar holds `columns // (n_w * cells_per_slice)` weight columns. Every
attribute is documented in docs/analog.md; `parse_analog` checks all of them and reports
every problem at once with the file, line and key path.
"""

from dataclasses import dataclass, field
from math import ceil

from jaxloop.errors import Problems

CROSSBAR_CLASSES = ("analog_crossbar",)
MAC_CLASSES = ("analog_mac",)
ENERGY_KINDS = ("dac", "row_driver", "cell", "adc", "sample_hold", "shift_add", "zero_gate")
MAX_SLICES = 64  # per-slice arrays are padded to this length so input/DAC bit sweeps never recompile

_INT_ATTRS = {  # name: (default, minimum)
    "rows": (None, 1), "columns": (None, 1), "cell_bits": (1, 1), "cells_per_slice": (1, 1),
    "cim_depth": (1, 1), "weight_bits": (8, 1), "input_bits": (8, 1), "dac_bits": (1, 1),
    "adc_bits": (8, 1), "columns_per_adc": (None, 1), "columns_summed": (1, 1),
    "slices_per_conversion": (1, 1),
}
_FLOAT_ATTRS = {  # name: (default, minimum, maximum)
    "activation_cycles": (1.0, 1e-12, None), "adc_conversion_scale": (1.0, 0.0, 1.0),
}
_KNOWN = set(_INT_ATTRS) | set(_FLOAT_ATTRS) | {
    "technology", "global_cycle_seconds", "dac_type", "weights_stationary", "charge_weight_loading", "dataspaces",
    "energy",
    "values", "sparse", "meshX", "meshY", "datawidth", "word_bits", "cell_area",
}


@dataclass(frozen=True)
class AnalogSpec:
    """One analog crossbar level, validated. Bits are integers, times in seconds."""

    name: str  # component name (without [..] range)
    level: int  # storage level index of the crossbar (always 0: the innermost)
    crossbars: int  # instances of the crossbar level
    rows: int
    columns: int
    cell_bits: int
    cells_per_slice: int
    cim_depth: int
    weight_bits: int
    input_bits: int
    dac_bits: int
    dac_type: str  # "temporal" (pulse count/width) or "voltage"
    adc_bits: int
    columns_per_adc: int
    columns_summed: int  # adjacent slice columns of one weight summed in analog before the ADC
    slices_per_conversion: int  # input slices accumulated in analog before one conversion
    adc_conversion_scale: float  # fraction of conversions performed (RAELLA speculation ~0.4)
    activation_cycles: float  # clock cycles per crossbar activation (one input slice)
    cycle_seconds: float
    technology: object  # as written ('32nm'); None if not given
    weights_stationary: bool
    charge_weight_loading: bool  # count the traffic that programs the weights (default: not stationary)
    weights: int  # dataspace indices
    inputs: int
    outputs: int
    input_bit_density: tuple  # per input bit, LSB first: P(bit = 1) over all inputs (zeros included)
    input_density: float  # P(input word != 0)
    average_cell_value: float  # mean normalized cell (conductance) value in [0, 1]
    skip_zero_slices: bool
    zero_gating: bool
    energy: dict = field(default_factory=dict, compare=False, hash=False)  # kind -> raw entry
    attributes: dict = field(default_factory=dict, compare=False, hash=False)
    where: str = ""

    @property
    def slice_bits(self):
        """Bits of one weight slice (cells_per_slice cells of cell_bits each)."""
        return self.cells_per_slice * self.cell_bits

    @property
    def weight_slices(self):
        """n_w = ceil(weight_bits / slice_bits): columns (of cell groups) per weight."""
        return ceil(self.weight_bits / self.slice_bits)

    @property
    def input_slices(self):
        """n_i = ceil(input_bits / dac_bits): crossbar activations per input vector."""
        return ceil(self.input_bits / self.dac_bits)

    @property
    def weight_columns(self):
        """Full-precision weights per row: columns // (n_w * cells_per_slice)."""
        return self.columns // (self.weight_slices * self.cells_per_slice)

    @property
    def output_columns(self):
        """Analog column outputs of one crossbar (one per cell group of cells_per_slice)."""
        return self.columns // self.cells_per_slice

    @property
    def adcs_per_crossbar(self):
        return ceil(self.output_columns / self.columns_summed / self.columns_per_adc)

    @property
    def activation_seconds(self):
        return self.activation_cycles * self.cycle_seconds

    @property
    def adc_rate(self):
        """Conversions per second each ADC must sustain: its columns within one activation."""
        return self.columns_per_adc / self.activation_seconds / self.slices_per_conversion

    @property
    def required_adc_bits(self):
        """Bits for an exact column sum with every row active: ceil(log2(R (2^b_d-1)(2^b_s-1) + 1))."""
        from math import log2

        full = self.rows * (2 ** self.dac_bits - 1) * (2 ** self.slice_bits - 1) * self.columns_summed
        return ceil(log2(full * self.slices_per_conversion + 1))


def _walk(arch):
    """[(name, class, attributes with inheritance, key path)] of every leaf, outermost first."""
    out = []

    def walk(node, inherited, path):
        if not isinstance(node, dict):
            return
        attrs = {**inherited, **(node.get("attributes") or {})}
        for i, leaf in enumerate(node.get("local") or []):
            if isinstance(leaf, dict):
                own = leaf.get("attributes") or {}
                cls = str(leaf.get("subclass") or leaf.get("class") or "")
                out.append((str(leaf.get("name", "")), cls, {**attrs, **own}, dict(own), (*path, "local", i)))
        for i, sub in enumerate(node.get("subtree") or []):
            walk(sub, attrs, (*path, "subtree", i))

    walk(arch, {}, ("architecture",))
    return out


def is_crossbar_class(cls):
    return str(cls).lower() in CROSSBAR_CLASSES


def is_analog_class(cls):
    return str(cls).lower() in CROSSBAR_CLASSES + MAC_CLASSES


def has_analog(doc):
    """True if the input document's architecture has an analog crossbar level."""
    arch = doc.get("architecture") if isinstance(doc, dict) else None
    return isinstance(arch, dict) and any(is_crossbar_class(c) for _, c, _, _, _ in _walk(arch))


def _bool(v, where, key, p, default):
    if v is None:
        return default
    if not isinstance(v, bool):
        p.add(where, f"{key} must be true or false, got {v!r}")
        return default
    return v


def _int(a, key, where, p):
    default, lo = _INT_ATTRS[key]
    v = a.get(key, default)
    if v is None:
        p.add(where, f"attribute '{key}' is required (an integer >= {lo})")
        return lo
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        p.add(where, f"attribute '{key}' must be an integer >= {lo}, got {v!r}")
        return lo
    return v


def _float(a, key, where, p):
    default, lo, hi = _FLOAT_ATTRS[key]
    v = a.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" + (f" and <= {hi}" if hi is not None else "")
        p.add(where, f"attribute '{key}' must be a number {rng}, got {v!r}")
        return float(default)
    return float(v)


def _probability(v, where, key, p):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        p.add(where, f"{key} must be a probability in [0, 1], got {v!r}")
        return None
    return float(v)


def _energy_entry(kind, v, where, p):
    """Check one `energy:` entry: a number (pJ), {energy, value_energy, area}, {model: ...} or
    {class: hwcomponents class, attributes, action}."""
    at = f"{where}: energy.{kind}"
    if isinstance(v, bool):
        p.add(at, f"expected a number (pJ per action) or a mapping, got {v!r}")
        return
    if isinstance(v, (int, float)):
        if v < 0:
            p.add(at, f"energy must be >= 0 pJ, got {v!r}")
        return
    if not isinstance(v, dict):
        p.add(at, f"expected a number (pJ per action) or a mapping, got {v!r}")
        return
    models = {"adc": ("murmann",), "cell": ("ohmic",)}
    if "model" in v:
        allowed = models.get(kind, ())
        if v["model"] not in allowed:
            hint = f"one of {list(allowed)}" if allowed else "none for this kind (give a number or a class)"
            p.add(at, f"model {v['model']!r} is not known for {kind}: models are {hint}")
        if v["model"] == "ohmic":
            for key in ("r_on", "r_off", "read_voltage", "read_pulse_seconds"):
                x = v.get(key)
                if isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0:
                    p.add(at, f"ohmic cell model needs '{key}' > 0, got {x!r}")
        extra = set(v) - {"model", "r_on", "r_off", "read_voltage", "read_pulse_seconds", "area", "energy_scale",
                          "area_scale"}
        if extra:
            p.add(at, f"unknown keys {sorted(extra)}")
        return
    if "class" in v:
        if not isinstance(v.get("attributes", {}), dict):
            p.add(at, "attributes must be a mapping")
        extra = set(v) - {"class", "attributes", "action", "energy_scale", "area_scale", "count"}
        if extra:
            p.add(at, f"unknown keys {sorted(extra)}")
        return
    extra = set(v) - {"energy", "value_energy", "area"}
    if extra:
        p.add(at, f"unknown keys {sorted(extra)} (a table entry has energy, value_energy (pJ) and area (um^2); "
                  "or give model: or class:)")
    for key in ("energy", "value_energy", "area"):
        x = v.get(key, 0.0)
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0:
            p.add(at, f"{key} must be a number >= 0, got {x!r}")


def _resolve(attrs, variables, where, p):
    """Numeric attributes written as expressions (`rows: 2 * ROWS`), as for other components."""
    from jaxloop.spec.arch import resolve_attributes

    keys = list(_INT_ATTRS) + list(_FLOAT_ATTRS) + ["global_cycle_seconds", "cell_area"]
    return resolve_attributes(attrs, variables, where, p, keys)


def parse_analog(arch_raw, arch, workload, where, variables=None):
    """The analog crossbar level of an architecture (or None for a digital design).

    Args:
        arch_raw: the `architecture` section as plain data.
        arch: the parsed `Arch` (storage levels innermost first, compute level).
        workload: the parsed `Workload`.
        where: `where(*key_path)` -> 'file:line: key.path' for messages.
        variables: the input's top-level `variables:` (names for attribute expressions).

    Returns:
        AnalogSpec, or None when no component has class analog_crossbar.

    Raises:
        SpecError: listing every problem found (attribute values, placement in the hierarchy,
            the compute level's mesh, dataspace names).
    """
    leaves = _walk(arch_raw)
    found = [(i, leaf) for i, leaf in enumerate(leaves) if is_crossbar_class(leaf[1])]
    if not found:
        macs = [leaf for leaf in leaves if str(leaf[1]).lower() in MAC_CLASSES]
        if macs:
            from jaxloop.errors import SpecError

            raise SpecError(f"{where(*macs[0][4])}: class analog_mac needs an analog_crossbar level directly above it")
        return None
    p = Problems()
    if len(found) > 1:
        p.add(where(*found[1][1][4]), "only one analog_crossbar level is supported")
    idx, (raw_name, cls, a, own, path) = found[0]
    at = where(*path)
    a = _resolve(a, variables, f"{at}.attributes", p)
    name = raw_name.split("[")[0].strip()
    if idx != len(leaves) - 2:
        p.add(at, "the analog_crossbar level must be the innermost storage level, directly above the analog_mac "
                  "compute level")
    comp = arch.compute
    if str(leaves[-1][1]).lower() not in MAC_CLASSES:
        p.add(where(*leaves[-1][4]), f"the compute level below an analog crossbar must have class analog_mac, "
                                     f"got {leaves[-1][1]!r}")
    unknown = sorted(k for k in own if k not in _KNOWN)
    if unknown:
        p.add(f"{at}.attributes", f"unknown attributes {unknown}; known: {sorted(_KNOWN)}")
    ints = {k: _int(a, k, f"{at}.attributes", p) for k in _INT_ATTRS if k != "columns_per_adc"}
    floats = {k: _float(a, k, f"{at}.attributes", p) for k in _FLOAT_ATTRS}
    dac_type = a.get("dac_type", "temporal")
    if dac_type not in ("temporal", "voltage"):
        p.add(f"{at}.attributes", f"dac_type must be 'temporal' or 'voltage', got {dac_type!r}")
        dac_type = "temporal"
    cycle = a.get("global_cycle_seconds", 1e-9)
    if isinstance(cycle, bool) or not isinstance(cycle, (int, float)) or cycle <= 0:
        p.add(f"{at}.attributes", f"global_cycle_seconds must be a number > 0, got {cycle!r}")
        cycle = 1e-9
    slice_bits = ints["cells_per_slice"] * ints["cell_bits"]
    n_w = ceil(ints["weight_bits"] / slice_bits)
    cols_per_weight = n_w * ints["cells_per_slice"]
    wcols = ints["columns"] // cols_per_weight
    if wcols < 1:
        p.add(f"{at}.attributes", f"{ints['columns']} columns cannot hold one {ints['weight_bits']}-bit weight "
                                  f"({n_w} slices x {ints['cells_per_slice']} cells = {cols_per_weight} columns)")
        wcols = 1
    out_cols = ints["columns"] // ints["cells_per_slice"]
    if a.get("columns_per_adc") is None:
        cpa = max(1, out_cols // ints["columns_summed"])  # default: one ADC per crossbar
    else:
        cpa = _int(a, "columns_per_adc", f"{at}.attributes", p)
    if ints["columns_summed"] > n_w:
        p.add(f"{at}.attributes", f"columns_summed ({ints['columns_summed']}) cannot exceed the {n_w} slice columns "
                                  "of one weight (it sums slices of the same weight)")
    if ints["slices_per_conversion"] > ceil(ints["input_bits"] / ints["dac_bits"]):
        p.add(f"{at}.attributes", "slices_per_conversion cannot exceed the number of input slices "
                                  f"({ceil(ints['input_bits'] / ints['dac_bits'])})")
    if ceil(ints["input_bits"] / ints["dac_bits"]) > MAX_SLICES:
        p.add(f"{at}.attributes", f"at most {MAX_SLICES} input slices are supported "
                                  f"(input_bits / dac_bits = {ints['input_bits']} / {ints['dac_bits']})")

    # Placement: crossbar = storage level 0, its fan-out = rows x weight columns.
    lv = arch.levels[0] if arch.levels else None
    if lv is None or lv.name != name:
        p.add(at, "the analog_crossbar level must be the innermost storage level")
    else:
        fx, fy = arch.fanout(0)
        if (fx, fy) != (ints["rows"], wcols):
            p.add(where(*leaves[-1][4]),
                  f"compute level {comp.name!r}: each crossbar must fan out to rows x weight columns = "
                  f"{ints['rows']} x {wcols} (meshX = rows, meshY = columns // (weight slices x cells_per_slice) = "
                  f"{ints['columns']} // ({n_w} x {ints['cells_per_slice']})), got {fx} x {fy}; set the compute "
                  f"level's meshX to {ints['rows']} x (crossbar meshX) = {ints['rows'] * lv.mesh_x} and meshY to "
                  f"{wcols} x (crossbar meshY) = {wcols * lv.mesh_y}")

    # Dataspaces.
    names = [d.name for d in workload.dataspaces]
    dsn = a.get("dataspaces") or {}
    if not isinstance(dsn, dict):
        p.add(f"{at}.attributes.dataspaces", "expected {weights: NAME, inputs: NAME, outputs: NAME}")
        dsn = {}
    rw = [d.name for d in workload.dataspaces if d.read_write]
    ro = [d.name for d in workload.dataspaces if not d.read_write]
    defaults = {"weights": "Weights" if "Weights" in names else (ro[0] if ro else None),
                "inputs": "Inputs" if "Inputs" in names else (ro[1] if len(ro) > 1 else None),
                "outputs": rw[0] if rw else None}
    ds = {}
    for role in ("weights", "inputs", "outputs"):
        n = dsn.get(role, defaults[role])
        if n not in names:
            p.add(f"{at}.attributes.dataspaces.{role}", f"dataspace {n!r} is not in the workload ({names})")
            ds[role] = 0
        else:
            ds[role] = names.index(n)
    extra = set(dsn) - {"weights", "inputs", "outputs"}
    if extra:
        p.add(f"{at}.attributes.dataspaces", f"unknown keys {sorted(extra)}")
    if len(set(ds.values())) != 3 and not p.items:
        p.add(f"{at}.attributes.dataspaces", "weights, inputs and outputs must be three different dataspaces")
    if not p.items and workload.dataspaces[ds["outputs"]].read_write is False:
        p.add(f"{at}.attributes.dataspaces.outputs", "the outputs dataspace must be the read-write one")

    # Values (data-value-dependent energy, sparsity).
    vals = a.get("values") or {}
    if not isinstance(vals, dict):
        p.add(f"{at}.attributes.values", "expected a mapping")
        vals = {}
    extra = set(vals) - {"input_bit_density", "input_density", "average_cell_value"}
    if extra:
        p.add(f"{at}.attributes.values", f"unknown keys {sorted(extra)} (known: input_bit_density, input_density, "
                                         "average_cell_value)")
    d_in = workload.dataspaces[ds["inputs"]].density if not p.items else 1.0
    if "input_density" in vals:
        d_in = _probability(vals["input_density"], f"{at}.attributes.values", "input_density", p) or 0.0
    bits = vals.get("input_bit_density")
    B = ints["input_bits"]
    if bits is None:
        dens = (0.5 * d_in,) * B  # uniform values among the non-zero inputs
    elif isinstance(bits, (int, float)) and not isinstance(bits, bool):
        dens = (_probability(bits, f"{at}.attributes.values", "input_bit_density", p) or 0.0,) * B
    elif isinstance(bits, list) and len(bits) == B:
        got = [_probability(x, f"{at}.attributes.values", f"input_bit_density[{i}]", p) for i, x in enumerate(bits)]
        dens = tuple(reversed([g or 0.0 for g in got]))  # written MSB first, stored LSB first
    else:
        p.add(f"{at}.attributes.values", f"input_bit_density must be a probability or a list of {B} "
                                         f"(one per input bit, most significant first), got {bits!r}")
        dens = (0.5,) * B
    # A zero word has all bits zero, so P(all bits of a slice are 0) >= P(word == 0) = 1 - d_in.
    if not p.items:
        for t in range(ceil(B / ints["dac_bits"])):
            q = 1.0
            for j in range(t * ints["dac_bits"], min(B, (t + 1) * ints["dac_bits"])):
                q *= 1.0 - dens[j]
            if q < 1.0 - d_in - 1e-9:
                p.add(f"{at}.attributes.values", f"input_bit_density is inconsistent with input_density {d_in}: "
                      f"slice {t} is zero with probability {q:.4g} < P(input == 0) = {1 - d_in:.4g}")
                break
    acv = vals.get("average_cell_value", 0.5)
    acv = _probability(acv, f"{at}.attributes.values", "average_cell_value", p)

    sp = a.get("sparse") or {}
    if not isinstance(sp, dict):
        p.add(f"{at}.attributes.sparse", "expected a mapping")
        sp = {}
    extra = set(sp) - {"skip_zero_input_slices", "input_zero_gating"}
    if extra:
        p.add(f"{at}.attributes.sparse", f"unknown keys {sorted(extra)} (known: skip_zero_input_slices, "
                                         "input_zero_gating)")
    skip = _bool(sp.get("skip_zero_input_slices"), f"{at}.attributes.sparse", "skip_zero_input_slices", p, False)
    gate = _bool(sp.get("input_zero_gating"), f"{at}.attributes.sparse", "input_zero_gating", p, False)
    stationary = _bool(a.get("weights_stationary"), f"{at}.attributes", "weights_stationary", p, True)
    charge = _bool(a.get("charge_weight_loading"), f"{at}.attributes", "charge_weight_loading", p, not stationary)

    energy = a.get("energy") or {}
    if not isinstance(energy, dict):
        p.add(f"{at}.attributes.energy", f"expected a mapping of {list(ENERGY_KINDS)} (+ program)")
        energy = {}
    for k, v in energy.items():
        if k not in ENERGY_KINDS + ("program",):
            p.add(f"{at}.attributes.energy", f"unknown kind {k!r}; kinds are {list(ENERGY_KINDS) + ['program']}")
            continue
        _energy_entry(k, v, at + ".attributes", p)
    if isinstance(energy.get("adc"), dict) and energy["adc"].get("model") == "murmann":
        if ints["adc_bits"] < 4:
            p.add(f"{at}.attributes.adc_bits", f"the Murmann-survey ADC model (hwcomponents-adc) needs >= 4 bits, "
                                               f"got {ints['adc_bits']}")
        if a.get("technology") is None:
            p.add(f"{at}.attributes", "attribute 'technology' is needed by the Murmann-survey ADC model")
    p.raise_if_any()
    return AnalogSpec(
        name=name, level=0, crossbars=lv.instances, rows=ints["rows"], columns=ints["columns"],
        cell_bits=ints["cell_bits"], cells_per_slice=ints["cells_per_slice"], cim_depth=ints["cim_depth"],
        weight_bits=ints["weight_bits"], input_bits=ints["input_bits"], dac_bits=ints["dac_bits"],
        dac_type=dac_type, adc_bits=ints["adc_bits"], columns_per_adc=cpa,
        columns_summed=ints["columns_summed"], slices_per_conversion=ints["slices_per_conversion"],
        adc_conversion_scale=floats["adc_conversion_scale"], activation_cycles=floats["activation_cycles"],
        cycle_seconds=float(cycle), technology=a.get("technology"), weights_stationary=stationary,
        charge_weight_loading=charge,
        weights=ds["weights"], inputs=ds["inputs"], outputs=ds["outputs"], input_bit_density=tuple(dens),
        input_density=float(d_in), average_cell_value=float(acv if acv is not None else 0.5),
        skip_zero_slices=skip, zero_gating=gate, energy=dict(energy), attributes=dict(a), where=at,
    )


def crossbar_attributes(raw_attrs, where):
    """The design numbers of a crossbar from its (inherited) attributes alone, without a
    workload: used by the energy estimator. Returns a dict of ints/floats; raises SpecError."""
    p = Problems()
    a = raw_attrs
    ints = {k: _int(a, k, where, p) for k in _INT_ATTRS if k != "columns_per_adc"}
    floats = {k: _float(a, k, where, p) for k in _FLOAT_ATTRS}
    p.raise_if_any()
    out_cols = ints["columns"] // ints["cells_per_slice"]
    cpa = a.get("columns_per_adc")
    ints["columns_per_adc"] = max(1, out_cols // ints["columns_summed"]) if cpa is None else _int(
        a, "columns_per_adc", where, p)
    p.raise_if_any()
    return {**ints, **floats, "dac_type": a.get("dac_type", "temporal"),
            "global_cycle_seconds": float(a.get("global_cycle_seconds", 1e-9)), "technology": a.get("technology"),
            "average_cell_value": float((a.get("values") or {}).get("average_cell_value", 0.5)),
            "energy": dict(a.get("energy") or {}), "cell_area": a.get("cell_area")}
