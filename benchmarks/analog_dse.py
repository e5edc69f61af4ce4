"""Analog design-space exploration: ADC resolution x columns per ADC x crossbar size, ISAAC-like tile,
one ResNet-50 layer (res3x_branch2b: C128 M128 R3 S3 P28 Q28), every point mapped exhaustively.

    .venv/bin/python benchmarks/analog_dse.py [--quick] [--layer data/workloads/resnet50/res3x_branch2b.yaml]

Design points. The ISAAC-like tile of data/arch/isaac_like.yaml (16-bit inputs and weights, 2-bit
cells, 1-bit DACs, 100-cycle crossbar activations at 1 GHz, Murmann-survey ADCs at the rate
their columns need) with square n x n crossbars, n in {64, 128, 256, 512}; the number of
crossbars keeps the tile's 1.57 M cells (96 x 128^2), 8 per IMA (fewer IMAs when there are
fewer than 96 crossbars); the IMA's input and output registers scale with n. For each n,
`columns_per_adc` in {n, n/4, n/16} (one ADC per crossbar down to one per 16 columns: each ADC
then runs at columns_per_adc / 100 ns) and ADC bits 4..10.

Mapping. Every design point is mapped exhaustively over a constrained mapspace (jaxloop.mapspace,
constraints of the design plus the ones below): the reduction dimensions C, R, S go on crossbar
rows, M on weight columns, either may also iterate inside a crossbar (unused rows/columns hold
the extra weights) or spread over crossbars and IMAs; weights are never duplicated (P, Q, N are
not spatial) and the outer schedule is fixed (Q at DRAM, P at eDRAM, no other temporal loops
above the crossbars). The mapspace is decoded once per crossbar size and evaluated for every
(ADC bits, columns per ADC) with the same compiled kernel: those are traced numbers, so only the
crossbar size recompiles. The best valid mapping by energy is reported per point; at the
ISAAC point the result is cross-checked against jaxloop.search.exhaustive.

Output: benchmarks/results/analog_dse.json (every point: pJ/MAC total and by component, ADC
energy per conversion, area of all crossbars with their periphery, best mapping) and
benchmarks/results/analog_dse.png (energy/MAC vs ADC bits per crossbar size; the breakdown
converters / array / buffers for 128 x 128).
"""

import argparse
import copy
import json
import time
from pathlib import Path

import jax
import numpy as np
from ruamel.yaml import YAML

from jaxloop.compiler import compile_spec
from jaxloop.constraints import parse_constraints
from jaxloop.energy.tables import tables_for
from jaxloop.mapspace import Mapspace, MappingBatch
from jaxloop.model.converters import ENERGY_KINDS
from jaxloop.model.evaluate import evaluate
from jaxloop.spec import spec_from_doc
from jaxloop.spec.yamlio import Source, merge_files

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT / "data" / "arch" / "isaac_like.yaml"
LAYER = ROOT / "data" / "workloads" / "resnet50" / "res3x_branch2b.yaml"
OUT = ROOT / "benchmarks" / "results"
TOTAL_CELLS = 96 * 128 * 128
CONVERTER_KINDS = ("dac", "row_driver", "adc", "sample_hold", "shift_add", "zero_gate")
CHUNK = 1 << 14


def design_doc(base, n, columns_per_adc, adc_bits):
    """The ISAAC-like architecture document with n x n crossbars and the given ADCs."""
    doc = copy.deepcopy(base)
    crossbars = TOTAL_CELLS // (n * n)
    per_ima = min(8, crossbars)
    imas = crossbars // per_ima
    tile = doc["architecture"]["subtree"][0]["subtree"][0]
    ima = tile["subtree"][0]
    ima["name"] = f"ima[0..{imas - 1}]"
    for reg, depth in zip(ima["local"], (64, 16)):  # input / output register scale with n
        reg["attributes"]["meshX"] = imas
        reg["attributes"]["depth"] = max(1, depth * n * per_ima // (128 * 8))
    xb = ima["subtree"][0]
    xb["name"] = f"xbar[0..{per_ima - 1}]"
    cb, cell = xb["local"]
    a = cb["attributes"]
    a.update(meshX=imas * per_ima, rows=n, columns=n, columns_per_adc=columns_per_adc, adc_bits=adc_bits)
    wcols = n // 8  # 16-bit weights in 2-bit cells: 8 columns per weight
    cell["name"] = f"cell[0..{n * wcols - 1}]"
    cell["attributes"] = {"meshX": imas * per_ima * n, "meshY": wcols}
    return doc


def dse_constraints(spec):
    """Extra constraints of this study (see the module docstring)."""
    names = spec.arch.names  # innermost first: crossbar, output_register, input_register, eDRAM, DRAM
    t = [{"target": names[0], "type": "temporal", "factors": "N=1 P=1 Q=1"},
         {"target": names[1], "type": "spatial", "factors": "N=1 P=1 Q=1"},
         {"target": names[3], "type": "spatial", "factors": "N=1 P=1 Q=1"},
         {"target": names[3], "type": "temporal", "factors": "N=1 P=28 Q=1", "permutation": "PQNCMRS"},
         {"target": names[4], "type": "temporal", "factors": "N=1 P=1 Q=28", "permutation": "QPNCMRS"}]
    for lv in (1, 2):
        t.append({"target": names[lv], "type": "temporal", "factors": "N=1 P=1 Q=1"})
    return {"targets": t}


def load_point(base, layer_doc, n, cpa, bits):
    doc = dict(layer_doc)
    doc.update(design_doc(base, n, cpa, bits))
    return spec_from_doc(doc, Source(), need_mapping=False)


def best_over(static, arr, batches, valid_only=True):
    """Index, energy and status of the lowest-energy valid mapping over pre-decoded chunks."""
    best = (np.inf, -1)
    n_valid = 0
    for off, b, n in batches:
        st = evaluate(static, arr, b)
        e = np.asarray(st.energy)[:n]
        ok = np.asarray(st.status)[:n] == 0
        n_valid += int(ok.sum())
        if ok.any():
            i = int(np.argmin(np.where(ok, e, np.inf)))
            if e[i] < best[0]:
                best = (float(e[i]), off + i)
    return best, n_valid


def breakdown(static, arr, batch):
    st = evaluate(static, arr, batch)
    macs = float(st.computes[0])
    conv = dict(zip(ENERGY_KINDS, np.asarray(st.converter_energy[0]) / macs))
    levels = dict(zip(static.level_names, (np.asarray(st.energy_ds[0]).sum(-1) + np.asarray(st.leak[0])) / macs))
    return {
        "pJ_per_MAC": float(st.energy[0]) / macs,
        "converters_pJ_per_MAC": sum(conv[k] for k in CONVERTER_KINDS),
        "array_pJ_per_MAC": conv["cell"],
        "buffers_pJ_per_MAC": sum(levels.values()) + float(st.compute_energy[0]) / macs,
        "by_kind_pJ_per_MAC": conv,
        "by_level_pJ_per_MAC": levels,
        "cycles": float(st.cycles[0]),
        "adc_conversions_per_MAC": float(st.converter_counts[0][3]) / macs,
        "macs": macs,
    }


def run(args):
    yaml = YAML(typ="safe")
    base = yaml.load(ARCH.read_text())
    layer_doc, _ = merge_files([Path(args.layer)])
    sizes = (128, 256) if args.quick else (64, 128, 256, 512)
    bits_list = (4, 6, 8, 10) if args.quick else tuple(range(4, 11))
    points = []
    t_start = time.time()
    for n in sizes:
        cpas = (n, n // 16) if args.quick else (n, n // 4, n // 16)
        spec = load_point(base, layer_doc, n, n, 8)
        cons = parse_constraints(spec, extra_sections=[("analog_dse", dse_constraints(spec))])
        ms = Mapspace(spec, cons)
        t0 = time.time()
        idx = np.arange(ms.size, dtype=np.int64)
        batches = []
        for s in range(0, ms.size, CHUNK):
            part = idx[s:s + CHUNK]
            n_real = part.size
            part = np.concatenate([part, np.repeat(part[-1:], CHUNK - n_real)])
            b = ms.decode(part)
            batches.append((s, MappingBatch(*(np.asarray(x) for x in b)), n_real))
        t_decode = time.time() - t0
        static0 = None
        for cpa in cpas:
            for bits in bits_list:
                sp = load_point(base, layer_doc, n, cpa, bits)
                table = tables_for(sp)
                static, arr = compile_spec(sp, table, links=False)  # searched as `jaxloop map` does
                if static0 is None:
                    static0 = static
                assert static == static0  # ADC numbers are traced: one compiled kernel per crossbar size
                t1 = time.time()
                (energy, best), n_valid = best_over(static, arr, batches)
                t_eval = time.time() - t1
                if best < 0:
                    print(f"n={n} cpa={cpa} bits={bits}: no valid mapping")
                    continue
                off = best - best % CHUNK
                chunk = next(b for o, b, _ in batches if o == off)
                row = chunk.take(np.array([best - off]))
                info = breakdown(static, arr, row)
                m = row.mapping(0)
                a = sp.analog
                info.update(n=n, columns_per_adc=cpa, adc_bits=bits, mapspace_size=int(ms.size), valid=n_valid,
                            best_index=int(best), crossbars=a.crossbars, adc_rate_Hz=a.adc_rate,
                            adc_pJ_per_conversion=float(arr["an_e"][ENERGY_KINDS.index("adc")]),
                            required_adc_bits=a.required_adc_bits, eval_s=t_eval,
                            crossbar_area_mm2=a.crossbars * table.area[a.name] / 1e6,
                            mapping={"rows": {d: int(m.spatial_x[0, i]) for i, d in enumerate(sp.workload.dims)
                                              if m.spatial_x[0, i] > 1},
                                     "columns": {d: int(m.spatial_y[0, i]) for i, d in enumerate(sp.workload.dims)
                                                 if m.spatial_y[0, i] > 1},
                                     "crossbar_temporal": {d: int(m.temporal[0, i]) for i, d in
                                                           enumerate(sp.workload.dims) if m.temporal[0, i] > 1}})
                points.append(info)
                print(f"n={n:3d} cols/ADC={cpa:3d} ADC {bits:2d} b: {info['pJ_per_MAC']:.3f} pJ/MAC "
                      f"(conv {info['converters_pJ_per_MAC']:.3f}, array {info['array_pJ_per_MAC']:.3f}, "
                      f"buffers {info['buffers_pJ_per_MAC']:.3f}); {ms.size} mappings, {n_valid} valid, "
                      f"{t_eval:.2f} s", flush=True)
        print(f"n={n}: decode {t_decode:.2f} s")
    check = cross_check(base, layer_doc, points)
    out = {"layer": str(Path(args.layer).relative_to(ROOT)) if Path(args.layer).is_relative_to(ROOT) else args.layer,
           "arch": str(ARCH.relative_to(ROOT)), "device": jax.devices()[0].device_kind,
           "elapsed_s": time.time() - t_start, "search_cross_check": check, "points": points}
    OUT.mkdir(parents=True, exist_ok=True)
    name = "analog_dse_quick" if args.quick else "analog_dse"
    (OUT / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(points, OUT / f"{name}.png")
    print(f"wrote {OUT / (name + '.json')} and {OUT / (name + '.png')}")


def cross_check(base, layer_doc, points):
    """The ISAAC point (128 x 128, one 8-bit ADC per crossbar) through jaxloop.search.exhaustive."""
    from jaxloop.search import Objective, exhaustive

    ref = next((p for p in points if p["n"] == 128 and p["columns_per_adc"] == 128 and p["adc_bits"] == 8), None)
    if ref is None:
        return None
    spec = load_point(base, layer_doc, 128, 128, 8)
    ms = Mapspace(spec, parse_constraints(spec, extra_sections=[("analog_dse", dse_constraints(spec))]))
    static, arr = compile_spec(spec, tables_for(spec), links=False)
    res = exhaustive(ms, static, arr, Objective.parse(spec, ["energy"]), progress=False)
    e = float(res.best_values[0])
    return {"search_best_pJ": e, "dse_best_pJ": ref["pJ_per_MAC"] * ref["macs"],
            "agree": bool(abs(e - ref["pJ_per_MAC"] * ref["macs"]) <= 1e-9 * e)}


def plot(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5))
    sizes = sorted({p["n"] for p in points})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, n in enumerate(sizes):
        cpas = sorted({p["columns_per_adc"] for p in points if p["n"] == n}, reverse=True)
        for li, cpa in enumerate(cpas):
            pts = sorted((p for p in points if p["n"] == n and p["columns_per_adc"] == cpa),
                         key=lambda p: p["adc_bits"])
            ax0.plot([p["adc_bits"] for p in pts], [p["pJ_per_MAC"] for p in pts], marker="o",
                     linestyle=("-", "--", ":")[li % 3], color=colors[ci % len(colors)],
                     label=f"{n}x{n}, {cpa} col/ADC")
        req = next(p["required_adc_bits"] for p in points if p["n"] == n)
        ax0.axvline(req, color=colors[ci % len(colors)], alpha=0.25, linewidth=4)
    ax0.set_xlabel("ADC resolution (bits)")
    ax0.set_ylabel("energy per MAC (pJ)")
    ax0.set_yscale("log")
    ax0.set_title("Best mapping per design (shaded: bits for an exact column sum)")
    ax0.legend(fontsize=7, ncol=2)
    n0 = 128 if 128 in sizes else sizes[0]
    cpa0 = max(p["columns_per_adc"] for p in points if p["n"] == n0)
    pts = sorted((p for p in points if p["n"] == n0 and p["columns_per_adc"] == cpa0), key=lambda p: p["adc_bits"])
    x = np.array([p["adc_bits"] for p in pts])
    bottom = np.zeros(len(pts))
    for key, label in (("converters_pJ_per_MAC", "converters (ADC, DAC, S&H, shift-add)"),
                       ("array_pJ_per_MAC", "array (cells)"),
                       ("buffers_pJ_per_MAC", "buffers (registers, eDRAM, DRAM)")):
        v = np.array([p[key] for p in pts])
        ax1.bar(x, v, bottom=bottom, label=label)
        bottom += v
    ax1.set_xlabel("ADC resolution (bits)")
    ax1.set_ylabel("energy per MAC (pJ)")
    ax1.set_title(f"Breakdown, {n0}x{n0} crossbars, {cpa0} columns per ADC")
    ax1.legend(fontsize=8)
    fig.suptitle("ISAAC-like tile, ResNet-50 res3x_branch2b (16-bit), each point mapped exhaustively")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer points (CI smoke run)")
    p.add_argument("--layer", default=str(LAYER))
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
