"""Energy and area of an analog crossbar's converters and cells (pJ per action, um^2).

Each kind of analog action (`dac`, `row_driver`, `cell`, `adc`, `sample_hold`, `shift_add`,
`zero_gate`, and `program` for writing a weight into the cells) gets its energy from the
crossbar's `energy:` attribute, one entry per kind:

* a number: pJ per action (a table, e.g. ISAAC's 1.66 pJ ADC conversion);
* `{energy: pJ, value_energy: pJ, area: um^2}`: a table with a data-value-dependent part,
  charged per unit of normalized input activity (see docs/analog.md);
* `{model: murmann}` (ADC): hwcomponents-adc's survey-fitted model (Murmann ADC survey,
  arXiv 2404.06553) at the crossbar's `adc_bits`, `technology` and the conversion rate its
  design needs (`columns_per_adc` conversions per activation). Energy per conversion is the
  model's full energy `ADC.get_energy()`, which hwcomponents splits into `convert` (80 %) and
  leakage at the rated throughput (20 %); both are spent per conversion when the ADC runs at
  its design rate, so jaxloop charges the sum per conversion and no ADC leakage;
* `{model: ohmic, r_on, r_off, read_voltage, read_pulse_seconds}` (cell): physical read
  energy V^2 G T with G = G_off + (G_on - G_off) * average_cell_value, charged per unit of
  input activity (x (2^dac_bits - 1) pulses for a temporal DAC);
* `{class: C, attributes: {...}, action: A}`: any hwcomponents model (hwcomponents-library's
  `IsaacADC`, `IsaacDAC`, `IsaacShiftAdd`, `AladdinComparator`, hwcomponents-neurosim's
  `NeuroSimArrayRowDrivers`/`NeuroSimMemoryCell`/`NeuroSimShiftAdd` when its binary runs, ...)
  through jaxloop's cached primitive estimator; `technology`, the clock and the kind's usual
  sizes (ADC/DAC resolution, rows, columns, width) are filled in when not given.

A kind with no entry costs nothing. `crossbar_table(design)` returns the ERT actions of the
crossbar component (storage actions read/write/update/leak plus one action per kind and
`<kind>_value`) and its area per crossbar including its periphery.
"""

import math

from jaxloop.energy import cache
from jaxloop.energy.primitives import estimate_primitive, tech_node_m
from jaxloop.errors import SpecError

KINDS = ("dac", "row_driver", "cell", "adc", "sample_hold", "shift_add", "zero_gate")
DEFAULT_ACTIONS = {"adc": ("convert", "read"), "dac": ("convert", "drive", "read"),
                   "row_driver": ("read", "drive", "convert"), "cell": ("read", "compute", "mac"),
                   "sample_hold": ("sample", "read"), "shift_add": ("shift_add", "add", "read"),
                   "zero_gate": ("compare", "read"), "program": ("write", "set")}


def murmann_adc(bits, tech_node_m_, rate_hz, n_adcs=1):
    """Energy per conversion (pJ) and area per ADC (um^2) from hwcomponents-adc.

    Args:
        bits: resolution (>= 4).
        tech_node_m_: technology node in metres.
        rate_hz: conversions per second of each ADC.
        n_adcs: ADCs sharing the aggregate rate (the per-ADC rate is what matters).

    Returns:
        (energy_pJ, area_um2): `ADC.get_energy()` (convert + the model's 20 % leakage share at
        the rated throughput) and the area of one ADC.
    """
    key = cache.make_key("analog-murmann-adc", float(bits), float(tech_node_m_), float(rate_hz), int(n_adcs))
    hit = cache.get(key)
    if hit is not None:
        return hit["energy"], hit["area"]
    try:
        from hwcomponents_adc import ADC
    except ImportError as e:
        raise SpecError(f"the Murmann-survey ADC model needs hwcomponents-adc ({e}); pip install hwcomponents-adc, "
                        "or give the ADC energy as a number (pJ per conversion)") from None
    model = ADC(n_bits=bits, tech_node=tech_node_m_, throughput=rate_hz * n_adcs, n_adcs=n_adcs)
    energy = float(model.get_energy()) * 1e12
    area = float(model.area) * 1e12 / n_adcs
    cache.put(key, {"energy": energy, "area": area})
    return energy, area


def _tech(design, where):
    return tech_node_m(design.get("technology"), where)


def _model_attrs(kind, cls, design, attrs):
    """Attributes for hwcomponents model `cls` of `kind`, with the crossbar's numbers filled in."""
    a = dict(attrs)
    d = design
    a.setdefault("technology", d.get("technology"))
    a.setdefault("global_cycle_seconds", d["global_cycle_seconds"])
    if kind == "adc":
        for k in ("resolution", "n_bits", "adc_resolution"):
            a.setdefault(k, d["adc_bits"])
        a.setdefault("throughput", d["adc_rate"])
    elif kind in ("dac", "row_driver"):
        a.setdefault("resolution", d["dac_bits"])
        a.setdefault("rows", d["rows"])
    elif kind == "shift_add":
        a.setdefault("width", d["weight_bits"] + d["input_bits"])
    elif kind == "zero_gate":
        a.setdefault("width", d["input_bits"])
    if str(cls).lower().startswith(("neurosim", "array", "memorycell")):
        a.setdefault("rows", d["rows"])
        a.setdefault("cols", d["columns"])
        a.setdefault("cols_active_at_once", d["columns"])
        a.setdefault("adc_resolution", d["adc_bits"])
        a.setdefault("average_cell_value", d["average_cell_value"])
        a.setdefault("read_pulse_width", d["global_cycle_seconds"])
    return {k: v for k, v in a.items() if v is not None}


def kind_energy(kind, entry, design, where):
    """(energy_pJ, value_energy_pJ, area_um2 per unit, source) of one kind's entry."""
    if entry is None:
        return 0.0, 0.0, 0.0, "none"
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        return float(entry), 0.0, 0.0, "table"
    at = f"{where}: energy.{kind}"
    if "model" in entry:
        esc, asc = float(entry.get("energy_scale", 1.0)), float(entry.get("area_scale", 1.0))
        if entry["model"] == "murmann":
            e, area = murmann_adc(design["adc_bits"], _tech(design, at), design["adc_rate"])
            area = float(entry.get("area", area))
            return e * esc, 0.0, area * asc, (f"hwcomponents-adc Murmann survey ({design['adc_bits']} b, "
                                              f"{design['adc_rate'] / 1e6:.4g} MS/s)")
        if entry["model"] == "ohmic":
            g_on, g_off = 1.0 / entry["r_on"], 1.0 / entry["r_off"]
            g = g_off + (g_on - g_off) * design["average_cell_value"]
            pulses = (2 ** design["dac_bits"] - 1) if design["dac_type"] == "temporal" else 1
            value = entry["read_voltage"] ** 2 * g * entry["read_pulse_seconds"] * pulses * 1e12
            return 0.0, value * esc, float(entry.get("area", 0.0)) * asc, "ohmic V^2 G T"
        raise SpecError(f"{at}: unknown model {entry['model']!r}")
    if "class" in entry:
        cls = str(entry["class"])
        attrs = _model_attrs(kind, cls, design, entry.get("attributes") or {})
        wanted = (entry["action"],) if entry.get("action") else DEFAULT_ACTIONS[kind]
        scale = float(entry.get("energy_scale", 1.0)) / float(entry.get("count", 1.0))
        from jaxloop.energy import neurosim

        if not neurosim.is_neurosim_class(cls):
            res = estimate_primitive(cls, attrs, at)
            name = _action(res, wanted, cls, at)
            return (float(res["actions"][name]) * scale, 0.0, float(res["area"]) * float(entry.get("area_scale", 1.0)),
                    f"{res['source']} {name}")
        if "cell_config" in attrs:
            attrs["cell_config"] = neurosim.cell_file(attrs["cell_config"])
        # NeuroSim's energies are linear in the average input value (E_off + (E_on - E_off) * a_in):
        # query a_in = 0 and 1 and charge the slope per unit of input activity (docs/analog.md).
        value_kind = kind in ("dac", "row_driver", "cell") and "average_input_value" not in (entry.get("attributes")
                                                                                           or {})
        lo = neurosim.estimate(cls, {**attrs, "average_input_value": 0.0} if value_kind else attrs, wanted, at)
        hi = neurosim.estimate(cls, {**attrs, "average_input_value": 1.0}, wanted, at) if value_kind else lo
        e0, e1 = lo["energy"] * scale, hi["energy"] * scale
        return e0, e1 - e0, lo["area"] * float(entry.get("area_scale", 1.0)), f"{lo['source']} {lo['action']}"
    return (float(entry.get("energy", 0.0)), float(entry.get("value_energy", 0.0)), float(entry.get("area", 0.0)),
            "table")


def _action(res, wanted, cls, at):
    name = next((a for a in wanted if a in res["actions"]), None)
    if name is None:
        raise SpecError(f"{at}: hwcomponents model for class {cls!r} has no action {list(wanted)} "
                        f"(it has {sorted(res['actions'])}); set action:")
    return name


def design_numbers(a):
    """Derived design numbers from crossbar attributes (see jaxloop.spec.analog.crossbar_attributes)."""
    d = dict(a)
    slice_bits = d["cells_per_slice"] * d["cell_bits"]
    d["weight_slices"] = math.ceil(d["weight_bits"] / slice_bits)
    d["input_slices"] = math.ceil(d["input_bits"] / d["dac_bits"])
    d["output_columns"] = d["columns"] // d["cells_per_slice"]
    d["adcs"] = math.ceil(d["output_columns"] / d["columns_summed"] / d["columns_per_adc"])
    d["activation_seconds"] = d["activation_cycles"] * d["global_cycle_seconds"]
    d["adc_rate"] = d["columns_per_adc"] / d["activation_seconds"] / d["slices_per_conversion"]
    return d


def units_per_crossbar(d):
    """How many of each kind one crossbar has (for its area)."""
    return {"dac": d["rows"], "row_driver": d["rows"], "cell": d["rows"] * d["columns"], "adc": d["adcs"],
            "sample_hold": d["output_columns"], "shift_add": d["adcs"], "zero_gate": d["rows"]}


def crossbar_table(design, where):
    """ERT actions (pJ), area per crossbar (um^2) and provenance of an analog crossbar.

    Actions: `read`/`update`/`leak` = 0 (in-situ weight use is charged through `cell`),
    `write` = programming one weight (`program` energy x cells per weight), and for every kind
    `<kind>` (per action) and `<kind>_value` (per unit of normalized activity).
    """
    d = design_numbers(design)
    energy = d.get("energy") or {}
    actions = {"read": 0.0, "update": 0.0, "leak": 0.0}
    area = 0.0
    sources = []
    units = units_per_crossbar(d)
    for kind in KINDS:
        e, v, a, src = kind_energy(kind, energy.get(kind), d, where)
        actions[kind] = e
        actions[f"{kind}_value"] = v
        area += a * units[kind]
        if src != "none":
            sources.append(f"{kind}={src}")
    e_prog, _, _, src = kind_energy("program", energy.get("program"), d, where)
    actions["write"] = e_prog * d["weight_slices"] * d["cells_per_slice"]
    if src != "none":
        sources.append(f"program={src}")
    cell_area = d.get("cell_area")
    if cell_area is not None and not (isinstance(energy.get("cell"), dict) and "area" in energy["cell"]):
        area += float(cell_area) * units["cell"]
    return actions, area, "jaxloop analog crossbar [" + ", ".join(sources) + "]"


def analog_component(cls, raw_attrs, where):
    """(ERT actions, area um^2, source) of an `analog_crossbar` or `analog_mac` component, for
    the energy estimator. The MAC level costs nothing itself: its energy is in the crossbar's
    converter and cell terms."""
    from jaxloop.spec.analog import crossbar_attributes, is_crossbar_class

    if is_crossbar_class(cls):
        return crossbar_table(crossbar_attributes(raw_attrs, where), where)
    return {"compute": 0.0, "leak": 0.0}, 0.0, "jaxloop analog_mac (energy is in the crossbar's converter terms)"
