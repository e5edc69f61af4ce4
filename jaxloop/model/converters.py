"""Analog-PIM converter terms: crossbar activations, DAC/ADC conversions, cell reads, shift-adds.

The crossbar level (storage level `static.analog.level`, one instance per crossbar) fans out
to `rows x weight columns` MAC positions: spatial X is the row (word-line) axis, Y the weight-
column axis. For mapping b, with `t` = product of all temporal factors, `X` = crossbars used,
`R` = rows used (product of X spatial factors at the crossbar), `W` = weight columns used
(product of Y factors), `n_i` input slices, `n_w` weight slices, `w_u` cells per slice
(SPEC-sparse-analog B2, dense case):

    crossbar activations  A = t * X * n_i
    DAC conversions         = A * R                 (every used row driven once per activation)
    cell reads              = A * R * W * n_w * w_u
    ADC conversions         = A * W * ceil(n_w / columns_summed) * adc_conversion_scale
                              / slices_per_conversion
    shift-adds              = ADC conversions
    sample-and-hold samples = ADC conversions

Unused rows do not reduce ADC conversions (every used column is converted after every
activation); unused columns are not converted. Sparse inputs (B6): with skipping of all-zero
input slices, slice s of an activation is skipped with probability `q_s ** R` (`q_s` = P(a
row's slice is zero), rows independent), removing its activation, DAC, cell, ADC and
shift-add work and its time; with input zero gating, rows whose whole input word is zero are
not driven (DAC conversions and cell reads removed, time kept), at the cost of one zero check
per input word. Value-dependent energy is charged per unit of normalized slice value
(`row_act`, `cell_act`), which skipped and gated rows never have, so it is exact under both.
"""

import dataclasses
from dataclasses import dataclass
from math import ceil

import jax.numpy as jnp
import numpy as np

from jaxloop.energy.analog import KINDS
from jaxloop.spec.analog import MAX_SLICES

COUNTS = ("crossbar_activations", "dac_conversions", "cell_reads", "adc_conversions", "shift_adds",
          "zero_checks", "skipped_activations", "gated_conversions")
ENERGY_KINDS = KINDS  # ("dac", "row_driver", "cell", "adc", "sample_hold", "shift_add", "zero_gate")


@dataclass(frozen=True)
class AnalogStatic:
    """Hashable structure of the analog level (part of the jit cache key; no numbers)."""

    level: int
    rows_forbidden: tuple  # per dim: True if it indexes the output (cannot be mapped on rows)
    cols_forbidden: tuple  # per dim: True if it indexes the input (cannot be mapped on columns)
    weight_dims: tuple  # per dim: True if it indexes the weights
    weights: int
    others: tuple  # dataspace indices the crossbar must not keep


def slice_statistics(bit_density, input_bits, dac_bits, dac_type):
    """Per input slice (LSB slice first): P(slice == 0), mean normalized value, mean of its square.

    Args:
        bit_density: P(bit j == 1) for j = 0 (LSB) .. input_bits-1, bits independent.
        input_bits, dac_bits: slice s holds bits [s*dac_bits, (s+1)*dac_bits).
        dac_type: "temporal" (energy ~ value) or "voltage" (cell energy ~ value^2).

    Returns:
        (q, row_act, cell_act) numpy arrays of length ceil(input_bits / dac_bits); values are
        normalized by the DAC full scale 2^dac_bits - 1.
    """
    n = ceil(input_bits / dac_bits)
    full = 2.0 ** dac_bits - 1.0
    q, m1, m2 = np.ones(n), np.zeros(n), np.zeros(n)
    for s in range(n):
        bits = range(s * dac_bits, min(input_bits, (s + 1) * dac_bits))
        w = {j: 2.0 ** (j - s * dac_bits) for j in bits}
        for j in bits:
            q[s] *= 1.0 - bit_density[j]
            m1[s] += w[j] * bit_density[j]
            m2[s] += w[j] ** 2 * bit_density[j]
        for j in bits:
            for k in bits:
                if j != k:
                    m2[s] += w[j] * w[k] * bit_density[j] * bit_density[k]
    row_act = m1 / full
    cell_act = m2 / full**2 if dac_type == "voltage" else row_act
    return q, row_act, cell_act


def compile_analog(spec, table, static, arrays):
    """Add the analog structure to `static` and its numbers to `arrays` (NumPy, host side).

    Every number (bits, slice statistics, energies, flags) is an array, so a sweep over ADC bits,
    columns per ADC, densities or energies reuses the compiled kernel. The crossbar level's
    capacity is set to rows x weight columns x cim_depth weights.
    """
    from jaxloop.energy.analog import crossbar_table
    from jaxloop.spec.analog import crossbar_attributes

    a = spec.analog
    wl = spec.workload
    D = len(wl.dims)
    rel = lambda t: tuple(bool(wl.dataspaces[t].relevant(d)) for d in range(D))  # noqa: E731
    ast = AnalogStatic(a.level, rel(a.outputs), rel(a.inputs), rel(a.weights), a.weights,
                       tuple(t for t in range(len(wl.dataspaces)) if t != a.weights))
    changes = {"analog": ast}
    if getattr(static, "keepable", ()):  # the crossbar can keep only the weights
        keepable = [list(r) for r in static.keepable]
        keepable[a.level] = [bool(k) and t == a.weights for t, k in enumerate(keepable[a.level])]
        changes["keepable"] = tuple(tuple(r) for r in keepable)
    static = dataclasses.replace(static, **changes)

    design = crossbar_attributes(a.attributes, a.where)
    acts, _, _ = crossbar_table(design, a.where)
    given = table.energy.get(a.name) or {}
    e = np.array([float(given.get(k, acts[k])) for k in KINDS], np.float64)
    ev = np.array([float(given.get(f"{k}_value", acts[f"{k}_value"])) for k in KINDS], np.float64)

    q, row_act, cell_act = slice_statistics(a.input_bit_density, a.input_bits, a.dac_bits, a.dac_type)
    n = len(q)
    pad = lambda x, fill: np.concatenate([x, np.full(MAX_SLICES - n, fill)]).astype(np.float64)  # noqa: E731
    arrays = dict(arrays)
    size = np.array(arrays["size"], np.float64)
    size[a.level] = float(a.rows * a.weight_columns * a.cim_depth)
    arrays["size"] = size
    arrays.update({
        "an_slice_mask": pad(np.ones(n), 0.0),
        "an_q": pad(q, 1.0),
        "an_row_act": pad(row_act, 0.0),
        "an_cell_act": pad(cell_act, 0.0),
        "an_zero_word": np.float64(1.0 - a.input_density),
        "an_skip": np.float64(a.skip_zero_slices),
        "an_gate": np.float64(a.zero_gating),
        "an_stationary": np.float64(a.weights_stationary),
        "an_drop_weights": np.float64(not a.charge_weight_loading),
        "an_cells_per_weight": np.float64(a.weight_slices * a.cells_per_slice),
        "an_adc_per_weight": np.float64(ceil(a.weight_slices / a.columns_summed) * a.adc_conversion_scale
                                        / a.slices_per_conversion),
        "an_activation_cycles": np.float64(a.activation_cycles),
        "an_e": e,
        "an_e_value": ev,
    })
    return static, arrays


def _zeros(B, dtype):
    return (jnp.zeros((B, len(COUNTS)), dtype), jnp.zeros((B, len(ENERGY_KINDS)), dtype), jnp.zeros((B,), dtype),
            jnp.zeros((B,), bool))


def converters(static, arr, temporal, spatial_x, spatial_y, keep, crossbars, t_total):
    """Converter counts [B, len(COUNTS)], energies [B, len(ENERGY_KINDS)] (pJ, all crossbars),
    analog cycles [B] and a mapping-rule violation flag [B] (bool).

    Args:
        static: the compiler's Static; `static.analog` is None for a digital design (all zeros).
        arr: the compiler's arrays (the `an_*` entries).
        temporal, spatial_x, spatial_y: [B, L, D] float factors.
        keep: [B, L, T] bool.
        crossbars: [B] crossbars used (spatial instances above the crossbar level).
        t_total: [B] product of all temporal factors.
    """
    B = temporal.shape[0]
    a = getattr(static, "analog", None)
    if a is None:
        return _zeros(B, t_total.dtype)
    lv = a.level
    R = jnp.prod(spatial_x[:, lv], axis=1)  # rows used per crossbar
    W = jnp.prod(spatial_y[:, lv], axis=1)  # weight columns used per crossbar
    slots = t_total * crossbars  # full input vectors applied, summed over crossbars
    mask, q = arr["an_slice_mask"], arr["an_q"]
    Rb = R[:, None]
    p_skip = arr["an_skip"] * jnp.power(q[None, :], Rb) * mask  # [B, S] P(all R rows' slice s == 0)
    kept = mask[None, :] - p_skip
    # Zero-word rows inside kept activations: R z - R z q^(R-1) (a skipped activation holds R z / q of them).
    z = arr["an_zero_word"]
    q_safe = jnp.where(q > 0, q, 1.0)
    zero_in_skipped = jnp.where(q[None, :] > 0, p_skip * Rb * z / q_safe[None, :], 0.0)
    gated = arr["an_gate"] * (Rb * z * mask[None, :] - zero_in_skipped)
    activations = slots * kept.sum(axis=1)
    skipped = slots * p_skip.sum(axis=1)
    dac = slots * (Rb * kept - gated).sum(axis=1)
    gated_total = slots * gated.sum(axis=1)
    cells_per_row = W * arr["an_cells_per_weight"]
    cells = dac * cells_per_row
    adc = activations * W * arr["an_adc_per_weight"]
    zero_checks = arr["an_gate"] * slots * R
    counts = jnp.stack([activations, dac, cells, adc, adc, zero_checks, skipped, gated_total], axis=1)

    row_activity = slots * R * (arr["an_row_act"] * mask).sum()
    cell_activity = slots * R * (arr["an_cell_act"] * mask).sum() * cells_per_row
    per_action = jnp.stack([dac, dac, cells, adc, adc, adc, zero_checks], axis=1)  # in ENERGY_KINDS order
    per_value = jnp.stack([row_activity, row_activity, cell_activity] + [jnp.zeros_like(dac)] * 4, axis=1)
    energy = per_action * arr["an_e"][None, :] + per_value * arr["an_e_value"][None, :]
    cycles = t_total * kept.sum(axis=1) * arr["an_activation_cycles"]

    rows_bad = ((spatial_x[:, lv] > 1) & jnp.asarray(a.rows_forbidden)[None, :]).any(axis=1)
    cols_bad = ((spatial_y[:, lv] > 1) & jnp.asarray(a.cols_forbidden)[None, :]).any(axis=1)
    keep_bad = ~keep[:, lv, a.weights] | keep[:, lv, list(a.others)].any(axis=1)
    above = temporal[:, lv + 1:] > 1
    moving = (above & jnp.asarray(a.weight_dims)[None, None, :]).any(axis=(1, 2)) & (arr["an_stationary"] > 0)
    bad = rows_bad | cols_bad | keep_bad | moving
    return counts, energy, cycles, bad


def rule_violations(static, mapping, weights_stationary=True):
    """Readable crossbar-rule violations of one Mapping (host side, for messages)."""
    a = static.analog
    if a is None:
        return []
    out = []
    lv, dims = a.level, static.dim_names
    for d in range(static.D):
        if mapping.spatial_x[lv, d] > 1 and a.rows_forbidden[d]:
            out.append(f"{dims[d]} is mapped on crossbar rows but indexes the outputs (rows must share an output)")
        if mapping.spatial_y[lv, d] > 1 and a.cols_forbidden[d]:
            out.append(f"{dims[d]} is mapped on crossbar columns but indexes the inputs (columns share the row input)")
    if not mapping.keep[lv, a.weights]:
        out.append("the crossbar must keep the weights")
    for t in a.others:
        if mapping.keep[lv, t]:
            out.append(f"the crossbar keeps only weights, not {static.ds_names[t]}")
    for l in range(lv + 1, static.L if weights_stationary else lv + 1):
        for d in range(static.D):
            if mapping.temporal[l, d] > 1 and a.weight_dims[d]:
                out.append(f"temporal {dims[d]}={int(mapping.temporal[l, d])} at {static.level_names[l]} would "
                           "reprogram the crossbar's weights (weights_stationary: true)")
    return out


def converters_json(counts, energy):
    """One mapping's converter counts [len(COUNTS)] and energies [len(ENERGY_KINDS)] as the
    `converters` block of `jaxloop model --json`: counts by name, `energy_pJ` per kind + total."""
    def num(x):
        x = float(x)
        return int(x) if x.is_integer() and abs(x) < 2**53 else x

    out = {name: num(c) for name, c in zip(COUNTS, counts)}
    out["energy_pJ"] = {k: float(e) for k, e in zip(ENERGY_KINDS, energy)}
    out["energy_pJ"]["total"] = float(sum(float(e) for e in energy))
    return out


def converters_text(counts, energy, computes):
    """Lines for the text summary: each count, and each kind's energy in pJ and fJ/Compute."""
    js = converters_json(counts, energy)
    lines = ["Analog converters", "-----------------"]
    lines += [f"    {name:<22} : {js[name]}" for name in COUNTS]
    per = 1000.0 / computes if computes else float("nan")
    lines += [f"    {(k if k != 'total' else 'all converters') + ' energy':<22} : {e:.2f} pJ "
              f"({e * per:.2f} fJ/Compute)" for k, e in js["energy_pJ"].items()]
    return lines


def drop_weight_loading(static, arr, reads, fills, updates):
    """Weights programmed before inference (`charge_weight_loading: false`, the default with
    stationary weights): remove the weight traffic that loads the crossbars, i.e. the crossbar's
    weight fills and every weight access at the levels above it (Timeloop still needs the
    outermost level to keep the weights). In-situ weight reads at the crossbar stay (they cost
    nothing there: the cell terms carry that energy). Digital designs: unchanged."""
    a = getattr(static, "analog", None)
    if a is None:
        return reads, fills, updates
    keep_factor = 1.0 - arr["an_drop_weights"]
    L, T = reads.shape[1], reads.shape[2]
    above = np.zeros((L, T))
    above[a.level + 1:, a.weights] = 1.0
    at = np.zeros((L, T))
    at[a.level, a.weights] = 1.0
    scale_rw = 1.0 - jnp.asarray(above) * (1.0 - keep_factor)
    scale_f = 1.0 - jnp.asarray(above + at) * (1.0 - keep_factor)
    return reads * scale_rw[None], fills * scale_f[None], updates * scale_rw[None]
