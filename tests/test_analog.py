"""Analog PIM crossbar terms: closed-form counts worked out by hand, converter energies against
hwcomponents-adc and SPEC-sparse-analog B3.1, the ISAAC-like design against the CiMLoop figure,
bit-plane skipping and zero gating against Monte Carlo, sweeps without recompiling, and errors."""

import json
from math import ceil
from pathlib import Path

import numpy as np
import pytest

from jaxloop import load_spec
from jaxloop.compiler import compile_spec
from jaxloop.energy.analog import murmann_adc
from jaxloop.energy.tables import tables_for
from jaxloop.errors import SpecError
from jaxloop.mapspace import MappingBatch
from jaxloop.model.converters import COUNTS, ENERGY_KINDS, rule_violations, slice_statistics
from jaxloop.model.evaluate import evaluate, evaluate_one
from jaxloop.model.status import reasons
from jaxloop.report import stats_json

DATA = Path(__file__).resolve().parents[1] / "data"

# Two crossbars of 8 rows x 8 columns of 2-bit cells: 4-bit weights take 2 slice columns, so 4
# weight columns per crossbar; 4-bit inputs through 1-bit DACs = 4 activations per input vector.
ARCH = """
architecture:
  version: '0.4'
  subtree:
  - name: sys
    attributes: {{technology: 32nm, global_cycle_seconds: 1.0e-09}}
    local:
    - {{name: DRAM, class: DRAM, attributes: {{type: LPDDR4, width: 64, datawidth: 8}}}}
    - {{name: buffer, class: regfile, attributes: {{width: 8, depth: 64, datawidth: 8}}}}
    subtree:
    - name: xb[0..1]
      local:
      - name: crossbar
        class: analog_crossbar
        attributes:
          meshX: 2
          rows: 8
          columns: 8
          cell_bits: 2
          weight_bits: 4
          input_bits: 4
          dac_bits: 1
          adc_bits: 6
          columns_per_adc: 4
          activation_cycles: 10
          {extra}
          energy: {{adc: 1.0, dac: 0.01, row_driver: 0.003, cell: 0.001, sample_hold: 0.002, shift_add: 0.05,
                    zero_gate: 0.02}}
      - name: mac[0..31]
        class: analog_mac
        attributes: {{meshX: 16, meshY: {mesh_y}}}
"""
PROBLEM = """
problem:
  version: '0.4'
  shape:
    name: CNN_Layer
    dimensions: [C, M, R, S, N, P, Q]
    data_spaces:
    - {{name: Weights, projection: [[[C]], [[M]], [[R]], [[S]]]}}
    - {{name: Inputs, projection: [[[N]], [[C]], [[R], [P]], [[S], [Q]]]}}
    - {{name: Outputs, projection: [[[N]], [[M]], [[Q]], [[P]]], read_write: true}}
  instance: {{C: {C}, M: 8, R: 1, S: 1, N: 1, P: 3, Q: 2{densities}}}
"""
# Rows <- C (all of it), weight columns <- M4, M2 over the two crossbars, P3 at the buffer, Q2 at DRAM.
MAPPING = """
mapping:
- {{target: crossbar, type: spatial, factors: C={C} M={xm} R=1 S=1 N=1 P=1 Q=1, permutation: {perm}, split: 1}}
- {{target: crossbar, type: temporal, factors: C=1 M={xt} R=1 S=1 N=1 P=1 Q=1, permutation: CMRSNPQ}}
- {{target: crossbar, type: datatype, keep: [Weights], bypass: [Inputs, Outputs]}}
- {{target: buffer, type: spatial, factors: C=1 M={bm} R=1 S=1 N=1 P=1 Q=1, permutation: MCRSNPQ, split: 1}}
- {{target: buffer, type: temporal, factors: C=1 M={tm} R=1 S=1 N=1 P=3 Q=1, permutation: PMCRSNQ}}
- {{target: buffer, type: datatype, keep: [Inputs, Outputs], bypass: [Weights]}}
- {{target: DRAM, type: temporal, factors: C=1 M=1 R=1 S=1 N=1 P=1 Q=2, permutation: QCMRSNP}}
- {{target: DRAM, type: datatype, keep: [Weights, Inputs, Outputs], bypass: []}}
"""
E = {"adc": 1.0, "dac": 0.01, "row_driver": 0.003, "cell": 0.001, "sample_hold": 0.002, "shift_add": 0.05,
     "zero_gate": 0.02}


def small(tmp_path, C=6, extra="", densities="", xm=4, bm=2, tm=1, perm="CMRSNPQ", mesh_y=4, xt=1):
    files = []
    for name, text in (("arch", ARCH.format(extra=extra, mesh_y=mesh_y)),
                       ("prob", PROBLEM.format(C=C, densities=densities)),
                       ("map", MAPPING.format(C=C, xm=xm, bm=bm, tm=tm, perm=perm, xt=xt))):
        f = tmp_path / f"{name}.yaml"
        f.write_text(text)
        files.append(f)
    return load_spec(*files)


def run(spec):
    table = tables_for(spec)
    static, st = evaluate_one(spec, table)
    counts = dict(zip(COUNTS, np.asarray(st.converter_counts[0])))
    energy = dict(zip(ENERGY_KINDS, np.asarray(st.converter_energy[0])))
    return static, st, counts, energy


def test_counts_by_hand_partial_rows(tmp_path):
    """C=6 uses 6 of 8 rows. t = 3 x 2 temporal iterations, 2 crossbars, n_i = 4 slices:
    48 activations; every one drives 6 rows (288 DAC conversions), reads 6 x 4 weights x 2 slices
    cells (2304 = MACs 288 x n_i 4 x n_w 2) and converts 4 x 2 = 8 columns (384 ADC conversions)."""
    spec = small(tmp_path)
    a = spec.analog
    assert (a.weight_slices, a.input_slices, a.weight_columns, a.adcs_per_crossbar) == (2, 4, 4, 2)
    static, st, c, e = run(spec)
    assert int(st.status[0]) == 0, reasons(int(st.status[0]))
    assert float(st.computes[0]) == 6 * 8 * 3 * 2 == 288
    assert c["crossbar_activations"] == 3 * 2 * 2 * 4 == 48
    assert c["dac_conversions"] == 48 * 6 == 288
    assert c["cell_reads"] == 48 * 6 * 4 * 2 == 2304
    assert c["adc_conversions"] == 48 * 4 * 2 == 384
    assert c["shift_adds"] == 384
    assert c["zero_checks"] == c["skipped_activations"] == c["gated_conversions"] == 0
    want = {"adc": 384 * 1.0, "dac": 288 * 0.01, "row_driver": 288 * 0.003, "cell": 2304 * 0.001,
            "sample_hold": 384 * 0.002, "shift_add": 384 * 0.05, "zero_gate": 0.0}
    assert e == pytest.approx(want, rel=1e-12)
    total = float(st.energy_ds[0].sum() + st.leak[0].sum() + st.compute_energy[0])
    assert float(st.energy[0]) == pytest.approx(total + sum(want.values()), rel=1e-12)
    assert float(st.cycles[0]) == 3 * 2 * 4 * 10  # every activation takes 10 cycles
    js = stats_json(spec, static, st)
    assert js["converters"]["adc_conversions"] == 384 and js["converters"]["dac_conversions"] == 288
    assert js["converters"]["energy_pJ"]["adc"] == pytest.approx(384.0)
    json.dumps(js)


def test_unused_rows_still_fire_every_adc(tmp_path):
    """Filling all 8 rows (C=8) adds DAC and cell work but no ADC conversion: ADC conversions
    depend on the columns used only, so the per-MAC ADC cost falls as the rows fill."""
    _, st6, c6, _ = run(small(tmp_path))
    _, st8, c8, _ = run(small(tmp_path, C=8))
    assert c8["adc_conversions"] == c6["adc_conversions"] == 384
    assert c8["crossbar_activations"] == c6["crossbar_activations"] == 48
    assert c8["dac_conversions"] == 48 * 8 and c8["cell_reads"] == 48 * 8 * 8
    assert c6["adc_conversions"] / float(st6.computes[0]) > c8["adc_conversions"] / float(st8.computes[0])


def test_unused_columns_are_not_converted(tmp_path):
    """M2 on the columns (2 of 4 weight columns), M2 in time inside the crossbar (the other weights
    sit in the unused columns): twice the activations, 2 weights x 2 slices converted each."""
    _, st, c, _ = run(small(tmp_path, xm=2, xt=2))
    assert int(st.status[0]) == 0
    assert c["crossbar_activations"] == 3 * 2 * 2 * 2 * 4 == 96
    assert c["adc_conversions"] == 96 * 2 * 2
    assert c["dac_conversions"] == 96 * 6


def test_column_summing_slice_accumulation_and_speculation(tmp_path):
    """columns_summed 2 sums the 2 slice columns of a weight before one conversion; 2 input slices
    accumulated in analog halve the conversions again; a conversion scale of 0.5 halves them again."""
    extra = "columns_summed: 2\n          slices_per_conversion: 2\n          adc_conversion_scale: 0.5"
    spec = small(tmp_path, extra=extra)
    _, st, c, _ = run(spec)
    assert c["adc_conversions"] == 48 * 4 * 1 / 2 * 0.5 == 48
    assert c["dac_conversions"] == 288  # rows are unaffected
    assert spec.analog.required_adc_bits == ceil(np.log2(8 * 1 * 3 * 2 * 2 + 1))


def test_mapping_rules(tmp_path):
    """M on the rows (outputs differ along a column), C on the columns (inputs differ along a row),
    and temporal M above the crossbar (reprogramming stationary weights) are flagged."""
    spec = small(tmp_path, perm="MCRSNPQ")  # split 1: M on X (rows), C on Y (columns)
    static, st, _, _ = run(spec)
    assert any(r.startswith("analog") for r in reasons(int(st.status[0])))
    msgs = rule_violations(static, spec.mapping)
    assert any("M is mapped on crossbar rows" in m for m in msgs)
    assert any("C is mapped on crossbar columns" in m for m in msgs)
    spec = small(tmp_path, xm=2, tm=2)
    m = spec.mapping
    m.temporal[1], m.temporal[2] = m.temporal[2].copy(), m.temporal[1].copy()  # P3 M2 -> DRAM, Q2 -> buffer
    static, st = evaluate_one(spec, tables_for(spec), m)
    assert any(r.startswith("analog") for r in reasons(int(st.status[0])))
    assert any("reprogram" in x for x in rule_violations(static, m))
    m2 = small(tmp_path).mapping
    m2.keep[0, 1] = True  # the crossbar keeps Inputs
    static, st = evaluate_one(spec, tables_for(spec), m2)
    assert int(st.status[0]) != 0
    assert any("keeps only weights" in x for x in rule_violations(static, m2))


# ---------------------------------------------------------------- ADC model (SPEC B3.1)

def test_adc_matches_hwcomponents_adc_and_spec():
    from hwcomponents_adc import ADC

    for bits, tech, rate in ((8, 32e-9, 1e8), (8, 32e-9, 1.28e9), (4, 22e-9, 1e8), (10, 65e-9, 1e8), (7, 32e-9, 1e9)):
        e, area = murmann_adc(bits, tech, rate)
        model = ADC(n_bits=bits, tech_node=tech, throughput=rate, n_adcs=1)
        assert e == pytest.approx(model.get_energy() * 1e12, rel=1e-12)
        assert e == pytest.approx((model.convert().energy + model.leak_power / rate) * 1e12, rel=1e-12)
        assert area == pytest.approx(model.area * 1e12, rel=1e-12)
    assert murmann_adc(8, 32e-9, 1e8)[0] == pytest.approx(1.71, abs=0.005)
    assert murmann_adc(8, 32e-9, 1.28e9)[0] == pytest.approx(1.93, abs=0.005)
    assert murmann_adc(8, 32e-9, 1.28e9)[1] == pytest.approx(6469, rel=1e-3)
    assert murmann_adc(8, 32e-9, 1e8)[1] == pytest.approx(3939, rel=1e-3)
    table = {(4, 22, 1e8): 0.457, (10, 22, 1e8): 1.64, (6, 32, 1e8): 1.07, (9, 32, 1e9): 4.70, (10, 32, 1e9): 13.9,
             (8, 65, 1e8): 6.49, (7, 32, 1e8): 1.31}
    for (bits, nm, rate), want in table.items():
        assert murmann_adc(bits, nm * 1e-9, rate)[0] == pytest.approx(want, rel=5e-3), (bits, nm, rate)


def test_design_adc_rate_and_energy():
    """ISAAC-like: one ADC per 128 columns, 100-cycle activations at 1 GHz -> 1.28 GS/s -> 1.93 pJ."""
    spec = load_spec(DATA / "arch" / "isaac_like.yaml", DATA / "workloads" / "resnet50" / "res3x_branch2b.yaml",
                     need_mapping=False)
    assert spec.analog.adc_rate == pytest.approx(1.28e9)
    table = tables_for(spec)
    assert table.energy["crossbar"]["adc"] == pytest.approx(murmann_adc(8, 32e-9, 1.28e9)[0], rel=1e-12)
    assert table.area["crossbar"] > 6469  # ADC-dominated crossbar area


# ---------------------------------------------------------------- ISAAC-like vs CiMLoop (SPEC B5)

def test_isaac_like_energy_per_mac():
    """ISAAC-like on a ResNet-50 layer that fills its crossbars lands within 20 % of CiMLoop's
    ISAAC model (~3.4 pJ/MAC, ADC ~1.9 pJ of it); the ADC is at least half of the energy."""
    spec = load_spec(DATA / "arch" / "isaac_like.yaml", DATA / "workloads" / "resnet50" / "res3x_branch2b.yaml",
                     DATA / "examples" / "analog" / "isaac_like.res3x_branch2b.map.yaml")
    static, st, c, e = run(spec)
    assert int(st.status[0]) == 0
    macs = float(st.computes[0])
    assert c["adc_conversions"] == macs  # 16 slices x 8 columns / 128 rows = 1 conversion per MAC
    assert c["crossbar_activations"] == 28 * 28 * 72 * 16
    pj_per_mac = float(st.energy[0]) / macs
    assert 3.4 * 0.8 <= pj_per_mac <= 3.4 * 1.2, pj_per_mac
    assert e["adc"] / macs == pytest.approx(1.93, abs=0.01)
    assert e["adc"] / float(st.energy[0]) >= 0.5


# ---------------------------------------------------------------- analog + sparse (SPEC B6)

def test_slice_statistics():
    q, m1, m2 = slice_statistics([0.5, 0.25, 0.1, 0.0], 4, 2, "voltage")
    assert q == pytest.approx([0.5 * 0.75, 0.9])
    assert m1 == pytest.approx([(0.5 + 2 * 0.25) / 3, 0.1 / 3])
    # E[(b0 + 2 b1)^2] = E[b0] + 4 E[b1] + 4 E[b0] E[b1]
    assert m2[0] == pytest.approx((0.5 + 4 * 0.25 + 4 * 0.5 * 0.25) / 9)


def test_raella_bit_plane_skipping_probabilities(tmp_path):
    """RAELLA artifact bit densities (MSB first): with 128 rows the MSB plane is skipped with
    probability 0.974 and the next with 0.081: about 1.05 of 8 planes."""
    dens = [0.0002, 0.0194, 0.2394, 0.3641, 0.3788, 0.3905, 0.3963, 0.3974]
    q, _, _ = slice_statistics(list(reversed(dens)), 8, 1, "temporal")
    p = q ** 128
    assert p[-1] == pytest.approx(0.974, abs=1e-3) and p[-2] == pytest.approx(0.081, abs=1e-3)
    assert p.sum() == pytest.approx(1.056, abs=2e-3)
    assert (q ** 512)[-1] == pytest.approx(0.90, abs=5e-3)


def _monte_carlo(q, z, R, n=200_000, seed=0):
    """Random inputs: a word is zero with probability z; otherwise bit t is 1 with probability
    (1 - q_t) / (1 - z), so P(bit t == 0) = q_t. Returns per slice: P(all R rows' bit is 0) and
    the expected non-zero-word rows in activations that are not skipped."""
    rng = np.random.default_rng(seed)
    zero = rng.random((n, R)) < z
    out_skip, out_rows = [], []
    for qt in q:
        one = (rng.random((n, R)) < (1 - qt) / (1 - z)) & ~zero
        skipped = ~one.any(axis=1)
        out_skip.append(skipped.mean())
        out_rows.append(np.where(skipped, 0, (~zero).sum(axis=1)).mean())
    return np.array(out_skip), np.array(out_rows)


def test_skipping_and_gating_match_monte_carlo(tmp_path):
    """Skipping all-zero input bit planes and gating zero words on the small layer (6 rows):
    the kernel's expected counts equal Monte Carlo estimates over random inputs."""
    dens = [0.05, 0.1, 0.3, 0.5]  # MSB first
    extra = ("values: {input_bit_density: [0.05, 0.1, 0.3, 0.5]}\n"
             "          sparse: {skip_zero_input_slices: true, input_zero_gating: true}")
    spec = small(tmp_path, extra=extra, densities=", densities: {Inputs: {distribution: hypergeometric, density: 0.6}}")
    assert spec.analog.input_density == pytest.approx(0.6)
    _, st, c, e = run(spec)
    q = 1 - np.array(dens[::-1])
    R, z, slots = 6, 0.4, 12  # 6 temporal iterations x 2 crossbars
    p_mc, rows_mc = _monte_carlo(q, z, R)
    np.testing.assert_allclose(q ** R, p_mc, atol=4e-3)
    assert c["skipped_activations"] == pytest.approx(slots * (q ** R).sum(), rel=1e-12)
    assert c["crossbar_activations"] == pytest.approx(slots * (4 - (q ** R).sum()), rel=1e-12)
    assert c["dac_conversions"] == pytest.approx(slots * rows_mc.sum(), rel=5e-3)
    assert c["dac_conversions"] == pytest.approx(slots * (R * (1 - q ** R) - R * z * (1 - q ** (R - 1))).sum(),
                                                 rel=1e-12)
    assert c["cell_reads"] == pytest.approx(c["dac_conversions"] * 8, rel=1e-12)
    assert c["adc_conversions"] == pytest.approx(c["crossbar_activations"] * 8, rel=1e-12)
    assert c["zero_checks"] == slots * R
    assert e["zero_gate"] == pytest.approx(slots * R * 0.02)
    assert float(st.cycles[0]) == pytest.approx(6 * (4 - (q ** R).sum()) * 10)
    # with neither option the dense counts come back
    spec = small(tmp_path, extra="values: {input_bit_density: [0.05, 0.1, 0.3, 0.5]}",
                 densities=", densities: {Inputs: {distribution: hypergeometric, density: 0.6}}")
    _, _, c0, _ = run(spec)
    assert (c0["crossbar_activations"], c0["dac_conversions"], c0["adc_conversions"]) == (48, 288, 384)


def test_value_dependent_energy(tmp_path):
    """A driver that costs energy only on a 1 bit (value_energy) is charged per driven row:
    sum over slices of rows x P(bit = 1), the same with or without skipping."""
    extra = ("values: {input_bit_density: [0.05, 0.1, 0.3, 0.5]}\n"
             "          sparse: {skip_zero_input_slices: SKIP}")
    arch_energy = "{adc: 1.0, dac: {energy: 0.0, value_energy: 0.01}, cell: {model: ohmic, r_on: 1000, " \
                  "r_off: 10000, read_voltage: 0.5, read_pulse_seconds: 1.0e-09}}"
    out = []
    for skip in ("false", "true"):
        old = ("{{adc: 1.0, dac: 0.01, row_driver: 0.003, cell: 0.001, sample_hold: 0.002, shift_add: 0.05,\n"
               "                    zero_gate: 0.02}}")
        text = ARCH.replace(old, arch_energy.replace("{", "{{").replace("}", "}}"))
        (tmp_path / "arch.yaml").write_text(text.format(extra=extra.replace("SKIP", skip), mesh_y=4))
        (tmp_path / "prob.yaml").write_text(PROBLEM.format(C=6, densities=""))
        (tmp_path / "map.yaml").write_text(MAPPING.format(C=6, xm=4, bm=2, tm=1, perm="CMRSNPQ", xt=1))
        spec = load_spec(tmp_path / "arch.yaml", tmp_path / "prob.yaml", tmp_path / "map.yaml")
        out.append(run(spec)[3])
    ones = sum([0.05, 0.1, 0.3, 0.5])
    g = 1 / 10000 + (1 / 1000 - 1 / 10000) * 0.5
    for e in out:
        assert e["dac"] == pytest.approx(12 * 6 * ones * 0.01, rel=1e-12)
        assert e["cell"] == pytest.approx(12 * 6 * ones * 8 * 0.25 * g * 1e-9 * 1e12, rel=1e-12)


# ---------------------------------------------------------------- sweeps, digital designs, errors

def test_adc_sweep_does_not_recompile():
    """ADC bits and columns per ADC are traced numbers: the Static (jit key) does not change."""
    from ruamel.yaml import YAML

    arch = YAML(typ="safe").load((DATA / "arch" / "isaac_like.yaml").read_text())
    layer = DATA / "workloads" / "resnet50" / "res3x_branch2b.yaml"
    mapping = DATA / "examples" / "analog" / "isaac_like.res3x_branch2b.map.yaml"
    results, statics = [], []
    for bits, cpa in ((8, 128), (6, 64), (10, 32)):
        xb = arch["architecture"]["subtree"][0]["subtree"][0]["subtree"][0]["subtree"][0]["local"][0]["attributes"]
        xb["adc_bits"], xb["columns_per_adc"] = bits, cpa
        from jaxloop.spec import spec_from_doc
        from jaxloop.spec.yamlio import Source, merge_files

        doc, _ = merge_files([layer, mapping])
        doc["architecture"] = arch["architecture"]
        spec = spec_from_doc(doc, Source())
        static, arr = compile_spec(spec, tables_for(spec))
        statics.append(static)
        before = evaluate._cache_size()
        st = evaluate(static, arr, MappingBatch.from_mappings([spec.mapping]))
        results.append((before, evaluate._cache_size(), float(st.converter_energy[0][3] / st.converter_counts[0][3])))
    assert statics[0] == statics[1] == statics[2]
    assert results[1][1] == results[1][0] and results[2][1] == results[2][0]  # no new compilation
    e8 = murmann_adc(8, 32e-9, 1.28e9)[0]
    e6 = murmann_adc(6, 32e-9, 0.64e9)[0]
    e10 = murmann_adc(10, 32e-9, 0.32e9)[0]
    assert [r[2] for r in results] == pytest.approx([e8, e6, e10], rel=1e-12)


def test_digital_design_has_no_converters():
    case = DATA / "examples" / "conv1d-3level"
    spec = load_spec(case / "input.yaml")
    from jaxloop.energy.ert import load_tables

    static, st = evaluate_one(spec, load_tables(case / "ERT.yaml"))
    assert spec.analog is None and static.analog is None
    assert not np.asarray(st.converter_counts).any() and not np.asarray(st.converter_energy).any()
    assert "converters" not in stats_json(spec, static, st)


def test_spec_errors(tmp_path):
    with pytest.raises(SpecError, match=r"meshY to 4 x \(crossbar meshY\) = 4"):
        small(tmp_path, mesh_y=8)
    with pytest.raises(SpecError, match="unknown attributes \\['row'\\]"):
        small(tmp_path, extra="row: 3")
    with pytest.raises(SpecError, match="model 'foo' is not known for adc"):
        text = ARCH.replace("adc: 1.0,", "adc: {{model: foo}},")
        (tmp_path / "a.yaml").write_text(text.format(extra="", mesh_y=4))
        (tmp_path / "p.yaml").write_text(PROBLEM.format(C=6, densities=""))
        load_spec(tmp_path / "a.yaml", tmp_path / "p.yaml", need_mapping=False)
    with pytest.raises(SpecError, match="input_bit_density is inconsistent"):
        small(tmp_path, extra="values: {input_bit_density: 0.6}",
              densities=", densities: {Inputs: {distribution: hypergeometric, density: 0.5}}")
    with pytest.raises(SpecError, match="columns_summed"):
        small(tmp_path, extra="columns_summed: 3")
    with pytest.raises(SpecError) as err:  # several problems are reported together
        small(tmp_path, extra="cim_depth: 0\n          adc_conversion_scale: 2")
    assert len(err.value.problems) >= 2


def test_attribute_expressions(tmp_path):
    """Crossbar attributes may be expressions over the input's `variables`, like other components."""
    arch = ARCH.format(extra="", mesh_y=4).replace("rows: 8", "rows: 2 * HALF")
    (tmp_path / "a.yaml").write_text("variables: {HALF: 4}\n" + arch)
    (tmp_path / "p.yaml").write_text(PROBLEM.format(C=6, densities=""))
    (tmp_path / "m.yaml").write_text(MAPPING.format(C=6, xm=4, bm=2, tm=1, perm="CMRSNPQ", xt=1))
    spec = load_spec(tmp_path / "a.yaml", tmp_path / "p.yaml", tmp_path / "m.yaml")
    assert spec.analog.rows == 8
    assert run(spec)[2]["dac_conversions"] == 288


def test_neurosim_entries():
    """hwcomponents-neurosim models as energy entries: NeuroSim's row-driver energy is linear in
    the average input value, so it splits into a per-conversion part and a per-activity part.
    Builds NeuroSim from the wheel's sources on first use where its binary does not run (~35 s)."""
    from jaxloop.energy import neurosim
    from jaxloop.energy.analog import design_numbers, kind_energy
    from jaxloop.spec.analog import crossbar_attributes

    assert neurosim.neurosim_binary() is not None, neurosim.unavailable_reason()
    d = design_numbers(crossbar_attributes({"rows": 128, "columns": 128, "cell_bits": 2, "weight_bits": 16,
                                            "input_bits": 16, "technology": "32nm"}, "x"))
    e0, ev, area, src = kind_energy("row_driver", {"class": "NeuroSimArrayRowDrivers",
                                                   "attributes": {"cell_config": "nvsim_RRAM.cell"}}, d, "x")
    assert e0 > 0 and ev > 0 and area > 0 and "neurosim" in src
    mid = neurosim.estimate("NeuroSimArrayRowDrivers", {"technology": "32nm", "global_cycle_seconds": 1e-9,
                                                         "rows": 128, "cols": 128, "cols_active_at_once": 128,
                                                         "cell_config": neurosim.cell_file("nvsim_RRAM.cell"),
                                                         "average_cell_value": 0.5, "read_pulse_width": 1e-9,
                                                         "adc_resolution": 8, "average_input_value": 0.5},
                            ("read",), "x")
    assert mid["energy"] == pytest.approx(e0 + 0.5 * ev, rel=1e-6)


def test_results_dataset_has_converters(tmp_path):
    """The xarray results of an analog design carry the converter counts and energies."""
    from jaxloop.results import read_dataset, to_dataset, write_dataset

    spec = small(tmp_path)
    table = tables_for(spec)
    static, st = evaluate_one(spec, table)
    ds = to_dataset(spec, static, st, MappingBatch.from_mappings([spec.mapping]), table=table)
    write_dataset(ds, tmp_path / "r.h5")
    back = read_dataset(tmp_path / "r.h5")
    assert float(back.converter_counts.sel(converter_count="adc_conversions")[0]) == 384
    assert float(back.converter_energy.sel(converter_kind="adc")[0]) == pytest.approx(384.0)
