"""Reproduce Timeloop's "480,000 mappings, 19x spread in energy efficiency" figure.

Exhaustively enumerates a VGG-16 3x3 convolution on the NVDLA-like 1024-MAC design
(data/arch/nvdla_like.yaml, the Timeloop mapper sample; energies from data/arch/nvdla_like.ERT.yaml,
made by jaxloop's hwcomponents estimator at 45 nm), keeps the valid mappings within 5 % of
peak performance (cycles <= best cycles / 0.95), as the original figure reportedly did, and
reports: their count, the spread of energy efficiency (MACs/pJ, max/min), how many are optimal
and within 1 % of the best, and the set with minimal DRAM accesses (size and its own spread).

    .venv/bin/python benchmarks/spread_480k.py [--layer conv3_2] [--near-peak 0.95]

Writes benchmarks/results/spread_480k.json and benchmarks/results/spread_480k.png.
"""

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxloop.compiler import compile_spec  # noqa: E402
from jaxloop.constraints import load_mapper_inputs  # noqa: E402
from jaxloop.energy.ert import load_tables  # noqa: E402
from jaxloop.mapspace import Mapspace  # noqa: E402
from jaxloop.search import Objective, exhaustive  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = {"mappings": 480_000, "spread": 19.0, "optimal": 1, "within_1pct_others": 9,
        "min_dram_mappings": 6_582, "min_dram_spread": 11.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", default="conv3_2", help="a VGG-16 layer in data/workloads/vgg16")
    ap.add_argument("--near-peak", type=float, default=0.95, help="keep mappings with >= this fraction of peak performance")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    arch = ROOT / "data" / "arch" / "nvdla_like.yaml"
    spec, constraints = load_mapper_inputs(arch, ROOT / "data" / "workloads" / "vgg16" / f"{args.layer}.yaml")
    ms = Mapspace(spec, constraints)
    static, karr = compile_spec(spec, load_tables(ROOT / "data" / "arch" / "nvdla_like.ERT.yaml"),
                                keepable=ms.keepable, links=False)  # as `jaxloop map`
    obj = Objective.parse(spec, ["energy", "last_level_accesses"])
    t = time.perf_counter()
    res = exhaustive(ms, static, karr, obj, keep_all=True, progress=not args.no_progress)
    seconds = time.perf_counter() - t
    rows = {k: np.concatenate(v) if isinstance(v, list) else np.asarray(v) for k, v in res.all_rows.items()}
    valid = rows["status"] == 0
    energy, cycles = rows["energy"][valid], rows["cycles"][valid]
    dram = rows["values"][valid][:, 1]
    near = cycles <= cycles.min() / args.near_peak
    e, d = energy[near], dram[near]
    macs = spec.workload.macs
    eff = macs / e  # MACs per pJ
    best = e.min()
    min_dram = d == d.min()
    out = {
        "layer": args.layer, "bounds": dict(zip(spec.workload.dims, spec.workload.bounds)), "macs": macs,
        "mapspace_size": int(ms.size), "evaluated": int(len(rows["energy"])), "valid": int(valid.sum()),
        "seconds": seconds, "mappings_per_s": len(rows["energy"]) / seconds,
        "near_peak_fraction": args.near_peak, "best_cycles": float(cycles.min()),
        "mappings": int(near.sum()), "spread": float(eff.max() / eff.min()),
        "optimal": int((e <= best * (1 + 1e-9)).sum()),
        "within_1pct_others": int((e <= best * 1.01).sum() - (e <= best * (1 + 1e-9)).sum()),
        "min_dram_mappings": int(min_dram.sum()),
        "min_dram_spread": float(e[min_dram].max() / e[min_dram].min()),
        "best_pj_per_mac": float(best / macs), "seed": SEED,
    }
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "spread_480k.json").write_text(json.dumps(out, indent=2) + "\n")
    order = np.sort(eff)[::-1] / eff.max()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(len(order)), order, ".", ms=1, color="tab:blue", label="mapping")
    md = np.sort(eff[min_dram])[::-1] / eff.max()
    ax.plot(np.searchsorted(-order, -md), md, ".", ms=2, color="tab:orange", label="minimal DRAM accesses")
    ax.axhline(1 / 1.01, color="tab:green", lw=0.8, label="within 1 % of the best")
    ax.set_xlabel(f"mappings within {100 * (1 / args.near_peak - 1):.0f} % of peak performance, sorted")
    ax.set_ylabel("energy efficiency / best")
    ax.set_title(f"VGG-16 {args.layer} on NVDLA-like 1024 MACs: {out['mappings']:,} mappings, "
                 f"{out['spread']:.1f}x spread", fontsize=9)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(res_dir / "spread_480k.png", dpi=130)
    print(f"{'':28}{'jaxloop':>14}{'seed figure':>14}")
    for key, label in (("mappings", "mappings near peak perf."), ("spread", "spread (x)"),
                       ("optimal", "optimal"), ("within_1pct_others", "others within 1 %"),
                       ("min_dram_mappings", "min-DRAM mappings"), ("min_dram_spread", "min-DRAM spread (x)")):
        v = out[key]
        print(f"{label:28}{v:>14,.1f}{SEED[key]:>14,}" if isinstance(v, float) else f"{label:28}{v:>14,}{SEED[key]:>14,}")
    print(f"exhaustive: {out['evaluated']:,} mappings in {seconds:.1f} s ({out['mappings_per_s']:,.0f}/s); "
          f"wrote benchmarks/results/spread_480k.json and .png")


if __name__ == "__main__":
    main()
