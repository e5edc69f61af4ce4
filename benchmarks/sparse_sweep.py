"""Sparse designs over density, and the kernel's throughput with the Sparseloop terms on.

    .venv/bin/python benchmarks/sparse_sweep.py [--points 25] [--batch 1024 4096 16384] [--repeat 7] [--quick]

1. Density sweep (densities are traced arrays: one compilation per design, then one call per
   density). Energy and cycles against density 0.01 .. 1.0 for
   * SpMSpM, the MICRO'22 Fig. 1 GEMM (M = N = K = 128, A and B fixed_structured at the swept
   density, BackingStorage -> Buffer -> Reg -> MAC): dense (no optimization), bitmask + gating,
   coordinate list (14-bit) + skipping;
   * Eyeriss-like AlexNet conv3 (reference cases sl-04.2.x, Inputs density swept, Weights 0.446,
   Outputs 0.403): Inputs/Outputs RLE in DRAM + weight-spad gating (sl-04.2.1), and on-chip
   RLE compression + weight-spad skipping (sl-04.2.3, another spad size and mapping), each
   next to the same design and mapping run dense.
2. Throughput: random mappings of sl-04.2.2 (Eyeriss-like, gating, DRAM compression; perfect
   factorizations and random loop orders, valid or not: the kernel does the same work either way),
   evaluated with and without the sparse terms, `scored` (energy, cycles, status, as the mapper
   and the README's dense figure) and `stats` (every field); compile time apart, best of
   --repeat interleaved calls, mappings/s per batch size.

Writes benchmarks/results/sparse_sweep.json and sparse_sweep_{spmspm,eyeriss}.png.
"""

import argparse
import copy
import functools
import json
import platform
import sys
import time
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jaxloop  # noqa: E402
from jaxloop.compiler import compile_spec  # noqa: E402
from jaxloop.energy.ert import EnergyTable, load_tables  # noqa: E402
from jaxloop.mapspace import MappingBatch  # noqa: E402
from jaxloop.model.evaluate import evaluate  # noqa: E402
from jaxloop.spec import spec_from_doc  # noqa: E402
from jaxloop.spec.yamlio import Source, plain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference" / "timeloop"
OUT = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import random_mappings, scored  # noqa: E402

GEMM = """
architecture:
  version: '0.4'
  subtree:
  - name: system
    attributes: {technology: 45nm}
    local:
    - name: BackingStorage
      class: storage
      attributes: {data_storage_depth: 16384, data_storage_width: 64, datawidth: 8,
                   metadata_storage_depth: 16384, metadata_storage_width: 28, read_bandwidth: 8}
    subtree:
    - name: PE
      local:
      - name: Buffer
        class: storage
        attributes: {data_storage_depth: 512, data_storage_width: 8, datawidth: 8, metadata_storage_depth: 256,
                     metadata_storage_width: 28, read_bandwidth: 2, write_bandwidth: 2}
      - name: Reg
        class: storage
        attributes: {data_storage_depth: 1, data_storage_width: 8, datawidth: 8, read_bandwidth: 1,
                     write_bandwidth: 1}
      - name: MAC
        class: intmac
        attributes: {datawidth: 8}
problem:
  shape:
    name: SpMSpM
    dimensions: [M, N, K]
    data_spaces:
    - {name: A, projection: [[[M]], [[K]]]}
    - {name: B, projection: [[[N]], [[K]]]}
    - {name: Z, projection: [[[M]], [[N]]], read_write: true}
  instance:
    {M: 128, N: 128, K: 128,
     densities: {A: {distribution: fixed_structured, density: 0.1},
                 B: {distribution: fixed_structured, density: 0.1}}}
mapping:
- {target: BackingStorage, type: temporal, factors: K=1 M=128 N=128, permutation: MKN}
- {target: Buffer, type: temporal, factors: K=1 M=1 N=1}
- {target: Buffer, type: datatype, keep: [A, B], bypass: [Z]}
- {target: Reg, type: temporal, factors: K=128 M=1 N=1}
- {target: Reg, type: datatype, keep: [Z], bypass: [A, B]}
"""
GEMM_OPT = """
sparse_optimizations:
  targets:
  - name: BackingStorage
    representation_format:
      data_spaces:
      - {name: A, rank_application_order: inner_to_outer, ranks: [{format: UOP, payload_word_bits: 0}, RANK]}
      - {name: B, rank_application_order: inner_to_outer,
         ranks: [{format: UOP, payload_word_bits: 0}, {format: UOP, payload_word_bits: 0}, RANK]}
  - name: Buffer
    representation_format:
      data_spaces:
      - {name: A, ranks: [RANK]}
      - {name: B, rank_application_order: inner_to_outer, ranks: [{format: UOP, payload_word_bits: 0}, RANK]}
    action_optimization:
    - {type: SAF, options: [{target: A, condition_on: [B]}]}
    - {type: SAF, options: [{target: B, condition_on: [A]}]}
  - name: Reg
    action_optimization:
    - {type: SAF, options: [{target: Z, condition_on: [A, B]}]}
"""
GEMM_ERT = {  # pJ, 45 nm (SPEC-sparse-analog A6.3)
    "BackingStorage": {"read": 32.2859, "write": 26.065, "update": 26.065, "gated_read": 0.00552,
                       "gated_write": 0.00552, "metadata_read": 14.0361, "metadata_write": 10.2583,
                       "gated_metadata_read": 0.00199, "leak": 0.0},
    "Buffer": {"read": 0.42568, "write": 0.58331, "update": 0.58331, "gated_read": 1e-5, "gated_write": 1e-5,
               "metadata_read": 0.7383, "metadata_write": 1.42366, "gated_metadata_read": 2e-5, "leak": 0.0},
    "Reg": {"read": 0.487462, "write": 0.487462, "update": 0.487462, "leak": 0.0},
    "MAC": {"mac_random": 0.5608, "mac_gated": 0.03642, "leak": 0.0},
}


def _spec_from_text(text):
    from ruamel.yaml import YAML

    doc = plain(YAML(typ="safe").load(text))
    return spec_from_doc(doc, Source())


def _dense(spec):
    """The same design without sparse_optimizations (Timeloop then runs no sparse analysis)."""
    doc = copy.deepcopy(spec.doc)
    doc.pop("sparse_optimizations", None)
    return spec_from_doc(doc, Source())


def sweep(spec, table, densities, setter):
    """Energy (pJ) and cycles at each density; `setter(arr, d)` returns arrays for density d."""
    static, arr = compile_spec(spec, table)
    batch = MappingBatch.from_mappings([spec.mapping])
    t0 = time.perf_counter()
    jax.block_until_ready(evaluate(static, arr, batch).energy)
    compile_s = time.perf_counter() - t0
    e, c, a = [], [], []
    t0 = time.perf_counter()
    for d in densities:
        r = evaluate(static, setter(arr, d), batch)
        e.append(float(r.energy[0]))
        c.append(float(r.cycles[0]))
        a.append(float(r.actual_computes[0]))
    return {"energy_pJ": e, "cycles": c, "actual_computes": a, "compile_s": compile_s,
            "per_point_s": (time.perf_counter() - t0) / len(densities)}


def gemm_sweeps(densities):
    table = EnergyTable({k: dict(v) for k, v in GEMM_ERT.items()})
    base = _spec_from_text(GEMM)
    out = {}
    specs = {"dense": base,
             "bitmask + gating": _spec_from_text(
                 GEMM + GEMM_OPT.replace("RANK", "{format: B}").replace("SAF", "gating")),
             "coordinate list + skipping": _spec_from_text(
                 GEMM + GEMM_OPT.replace("RANK", "{format: CP, metadata_word_bits: 14}").replace("SAF", "skipping"))}
    for name, spec in specs.items():
        def setter(arr, d):
            return dict(arr, sp_density=np.array([d, d, 1.0])) if "sp_density" in arr else arr
        out[name] = sweep(spec, table, densities, setter)
        r = out[name]
        print(f"  SpMSpM {name:28s} compile {r['compile_s']:.1f} s, {r['per_point_s'] * 1e3:.1f} ms/point")
    return out


def eyeriss_sweeps(densities):
    out = {}
    for name, case in (("sl-04.2.1 dense", "sl-04.2.1-eyeriss-like-gating"),
                       ("sl-04.2.1: DRAM RLE + weight gating", "sl-04.2.1-eyeriss-like-gating"),
                       ("sl-04.2.3 dense", "sl-04.2.3-eyeriss-like-onchip-compression"),
                       ("sl-04.2.3: on-chip RLE + weight skipping", "sl-04.2.3-eyeriss-like-onchip-compression")):
        spec = jaxloop.load_spec(REF / case / "input.yaml")
        table = load_tables(REF / case / "ERT.yaml")
        if name.endswith("dense"):
            spec = _dense(spec)

        def setter(arr, d):
            if "sp_density" not in arr:
                return arr
            dens = np.array(arr["sp_density"], np.float64)
            dens[1] = d  # Inputs
            return dict(arr, sp_density=dens)
        out[name] = sweep(spec, table, densities, setter)
        r = out[name]
        print(f"  Eyeriss {name:40s} compile {r['compile_s']:.1f} s, {r['per_point_s'] * 1e3:.1f} ms/point")
    return out


def plot(results, densities, title, xlabel, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        axes[0].plot(densities, np.array(r["energy_pJ"]) * 1e-6, marker=".", label=name)
        axes[1].plot(densities, r["cycles"], marker=".", label=name)
    for ax, ylabel in zip(axes, ("energy (uJ)", "cycles")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def throughput(batches, repeat):
    """mappings/s of the kernel on random mappings of sl-04.2.2, dense (the same design without
    sparse_optimizations) and sparse, in two configurations: `scored` (energy, cycles, status:
    what the mapper's search runs and what the README's dense kernel figure measures) and
    `stats` (every Stats field). Calls are interleaved so both kernels see the same machine; the
    best of `repeat` wall times counts; compile time apart."""
    case = "sl-04.2.2-eyeriss-like-gating-mapspace-search"
    spec = jaxloop.load_spec(REF / case / "input.yaml")
    table = load_tables(REF / case / "ERT.yaml")
    kernels = {}
    for name, sp in (("dense", _dense(spec)), ("sparse", spec)):
        static, arr = compile_spec(sp, table, keepable=spec.mapping.keep, links=False)  # as the mapper searches
        kernels[(name, "scored")] = (scored(static), arr)
        kernels[(name, "stats")] = (functools.partial(evaluate, static), arr)
    out = []
    for batch_size in batches:
        rng = np.random.default_rng(0)
        batch = MappingBatch(*(jax.numpy.asarray(x) for x in random_mappings(spec, batch_size, rng)))
        compile_s, best = {}, {k: float("inf") for k in kernels}
        for k, (f, arr) in kernels.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(arr, batch))
            compile_s[k] = time.perf_counter() - t0
        for _ in range(repeat):
            for k, (f, arr) in kernels.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(arr, batch))
                best[k] = min(best[k], time.perf_counter() - t0)
        for config in ("scored", "stats"):
            d, s = (batch_size / best[(n, config)] for n in ("dense", "sparse"))
            row = {"batch": batch_size, "config": config, "dense_per_s": d, "sparse_per_s": s,
                   "sparse_over_dense": s / d, "compile_s": {n: compile_s[(n, config)] for n in ("dense", "sparse")}}
            out.append(row)
            print(f"  {batch_size:7d}  {config:6s}  dense {d:10,.0f}/s  sparse {s:10,.0f}/s  ratio {s / d:.2f}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=25, help="densities from 0.01 to 1.0 (log-spaced)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1024, 4096, 16384], help="mappings per throughput call")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="5 points, batch 256 (CI smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.points, args.batch, args.repeat = 5, [256], 1
    densities = np.geomspace(0.01, 1.0, args.points)
    OUT.mkdir(parents=True, exist_ok=True)
    print("density sweep: SpMSpM (MICRO'22 Fig. 1 GEMM 128^3)")
    gemm = gemm_sweeps(densities)
    plot(gemm, densities, "SpMSpM 128x128x128 (A, B fixed_structured)", "density of A and B",
         OUT / "sparse_sweep_spmspm.png")
    print("density sweep: Eyeriss-like AlexNet conv3")
    eye = eyeriss_sweeps(densities)
    plot(eye, densities, "Eyeriss-like AlexNet conv3 (Weights 0.446, Outputs 0.403)", "density of Inputs",
         OUT / "sparse_sweep_eyeriss.png")
    print(f"throughput on sl-04.2.2 ({jax.devices()[0].device_kind}, one call on one device, best of {args.repeat})")
    print("    batch  config  dense / sparse mappings/s")
    tp = throughput(args.batch, args.repeat)
    res = {"densities": densities.tolist(), "spmspm": gemm, "eyeriss": eye, "throughput": tp,
           "device": jax.devices()[0].device_kind, "platform": platform.platform(), "jax": jax.__version__}
    (OUT / "sparse_sweep.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {OUT / 'sparse_sweep.json'} and the two PNGs")


if __name__ == "__main__":
    main()
