"""Mapper quality: under the reference designs' own mapspace constraints, does jaxloop's mapper
find a mapping at least as good as the reference mapping (the input.yaml mapping Timeloop's
mapper produced, evaluated by jaxloop's kernel), within 10 minutes?

    python benchmarks/mapper_quality.py [--time 240] [--time2 120] [--objectives energy delay,energy]
                                        [--cases tl06 ed-eyeriss_like ...]

For each case: the mapspace from input.yaml + the design's constraints (mapper-src), the
reference mapping's energy and cycles, then the search (exhaustive when the space is small,
else the hybrid evolutionary search) with a time limit. Writes benchmarks/results/mapper_quality.json.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxloop.compiler import compile_spec  # noqa: E402
from jaxloop.constraints import load_mapper_inputs  # noqa: E402
from jaxloop.energy.ert import load_tables  # noqa: E402
from jaxloop.mapspace import Mapspace  # noqa: E402
from jaxloop.model.evaluate import evaluate_one  # noqa: E402
from jaxloop.search import Objective, exhaustive, hybrid  # noqa: E402
from jaxloop.spec import load_spec  # noqa: E402

REF = REPO.parent / "shared" / "reference" / "timeloop"
CASES = {
    "tl06": ("tl06-mapper-convlayer-eyeriss-vgg02l5", "mapper-src/arch/eyeriss_like.yaml"),
    "ed-eyeriss_like": ("ed-eyeriss_like", "mapper-src/arch.yaml"),
    "ed-simba_like": ("ed-simba_like", "mapper-src/arch.yaml"),
    "ed-simple_output_stationary": ("ed-simple_output_stationary", "mapper-src/arch.yaml"),
    "ed-simple_weight_stationary": ("ed-simple_weight_stationary", "mapper-src/arch.yaml"),
    "ed-sparse_tensor_core_like": ("ed-sparse_tensor_core_like", "mapper-src/arch.yaml"),
}
EXHAUSTIVE_MAX = 2_000_000


def run_case(name, time_limit, objective, population, seed):
    folder, cons = CASES[name]
    d = REF / folder
    extra = [d / "mapper-src/problem.yaml"] if (d / "mapper-src/problem.yaml").exists() else []
    spec, c = load_mapper_inputs(d / "input.yaml", d / cons, *extra)
    ms = Mapspace(spec, c)
    table = load_tables(d / "ERT.yaml", d / "ART.yaml")
    static, karr = compile_spec(spec, table, keepable=ms.keepable, links=False)  # the search kernel, as `jaxloop map`
    obj = Objective.parse(spec, objective)
    ref_spec = load_spec(d / "input.yaml")
    _, ref_stats = evaluate_one(ref_spec, table)
    ref = {"energy_pJ": float(ref_stats.energy[0]), "cycles": float(ref_stats.cycles[0]),
           "valid": int(ref_stats.status[0]) == 0}
    try:
        ref_index = ms.encode(ref_spec.mapping) if ms.flat else None
        ref_in_space = True
    except ValueError:
        ref_index, ref_in_space = None, False
    t0 = time.time()
    if ms.flat and ms.size <= EXHAUSTIVE_MAX:
        res = exhaustive(ms, static, karr, obj, progress=False, time_limit=time_limit)
    else:
        res = hybrid(ms, static, karr, obj, population=population, time_limit=time_limit, patience=0, seed=seed,
                     progress=False)
    wall = time.time() - t0
    out = {"case": folder, "constraints": cons, "mapspace_size": str(ms.size), "objective": obj.text,
           "algorithm": res.algorithm, "time_limit_s": time_limit, "wall_s": round(wall, 1),
           "evaluated": res.reduction.evaluated, "valid": res.reduction.valid, "stop_reason": res.stop_reason,
           "reference_mapping": {**ref, "in_mapspace": ref_in_space,
                                 "index": str(ref_index) if ref_index is not None else None}}
    ref_vals = [float(v) for v in np.asarray(obj.values(ref_stats))[0]]
    out["reference_mapping"]["objective_values"] = ref_vals
    if res.best_batch is not None:
        _, st = evaluate_one(spec, table, res.best_batch.mapping(0))
        e, cyc = float(st.energy[0]), float(st.cycles[0])
        out["objective_values"] = res.best_values
        # Timeloop's comparison (0.1 % tolerance, lexicographic): is the reference better than ours?
        out["at_least_as_good_as_reference_by_objective"] = not obj.better(ref_vals, res.best_values)
        out["found"] = {"energy_pJ": e, "cycles": cyc, "valid": int(st.status[0]) == 0,
                        "mapping": res.best_batch.mapping(0).to_yaml_list(spec.arch, spec.workload),
                        "energy_vs_reference": e / ref["energy_pJ"], "cycles_vs_reference": cyc / ref["cycles"]}
        out["energy_at_most_reference"] = bool(e <= ref["energy_pJ"] * (1 + 1e-9))
        j = obj.names.index("energy") if obj.lexicographic and "energy" in obj.names else None
        if j is not None:  # when the search first held a mapping at least as good as the reference
            hit = [h for h in res.reduction.history if h[2][j] <= ref["energy_pJ"] * (1 + 1e-9)]
            out["seconds_to_reach_reference"] = round(hit[0][0], 2) if hit else None
            out["mappings_to_reach_reference"] = hit[0][1] if hit else None
    else:
        out["found"] = None
        out["energy_at_most_reference"] = False
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=240.0, help="seconds of search per case (<= 600)")
    ap.add_argument("--objectives", nargs="*", default=["energy", "delay,energy"],
                    help="one search per objective and case ('delay,energy' is Timeloop's lexicographic pair)")
    ap.add_argument("--time2", type=float, default=120.0, help="seconds per case for the objectives after the first")
    ap.add_argument("--population", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/mapper_quality.json"))
    args = ap.parse_args()
    results = []
    for k, objective in enumerate(args.objectives):
        for name in args.cases:
            r = run_case(name, min(args.time if k == 0 else args.time2, 600.0), objective, args.population, args.seed)
            f = r["found"]
            print(f"[{objective}] {name}: size {int(r['mapspace_size']):.3g}, {r['algorithm']} {r['wall_s']} s, "
                  f"{r['evaluated']:,} evaluated; reference {r['reference_mapping']['energy_pJ']:.6g} pJ"
                  + (f", found {f['energy_pJ']:.6g} pJ ({f['energy_vs_reference']:.4f}x), cycles "
                     f"{f['cycles_vs_reference']:.4f}x" if f else ", nothing found")
                  + f"; energy <= reference: {r['energy_at_most_reference']}, at least as good by the objective: "
                    f"{r.get('at_least_as_good_as_reference_by_objective')}"
                  + (f", reached the reference energy after {r.get('seconds_to_reach_reference')} s"
                     if r.get("seconds_to_reach_reference") is not None else ""), flush=True)
            results.append(r)
    doc = {"benchmark": "mapper_quality", "host": platform.node(), "cpu": platform.processor() or platform.machine(),
           "device": str(jax.devices()[0]), "jax": jax.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "settings": vars(args), "results": results,
           "energy_objective_all_at_most_reference": all(r["energy_at_most_reference"] for r in results
                                                         if r["objective"] == "energy"),
           "all_at_least_as_good_by_objective": all(r.get("at_least_as_good_as_reference_by_objective", False)
                                                    for r in results)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
