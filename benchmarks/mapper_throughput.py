"""End-to-end exhaustive mapper throughput (decode + evaluate + reduce), mappings/s.

    python benchmarks/mapper_throughput.py [--chunks 4096 16384 65536] [--seconds 20]

Cases: tl05-null (the conv1d exercise, no constraints) and tl06 (VGG02 layer 5 on Eyeriss
with the design's constraints). For each chunk size: steady-state throughput of the whole
exhaustive loop (compile and worker start-up excluded: a warm-up run first), on one worker
process per core (jaxloop.workers: what `jaxloop map` runs for long searches; the headline
figure) and in this process (one device per core); and, separately, decode alone and the
kernel alone on the same chunks, sharded over this process's devices. Then the time to
exhaust each mapspace: measured for tl05-null (one full run), extrapolated from the steady
rate when it would exceed 10 minutes. Writes benchmarks/results/mapper_throughput.json.
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxloop.compiler import compile_spec  # noqa: E402
from jaxloop.constraints import load_mapper_inputs  # noqa: E402
from jaxloop.energy.ert import load_tables  # noqa: E402
from jaxloop.mapspace import MappingBatch, Mapspace  # noqa: E402
from jaxloop.model.evaluate import evaluate, shard  # noqa: E402
from jaxloop.search import Evaluator, Objective, _host, exhaustive  # noqa: E402
from jaxloop.workers import Workers  # noqa: E402
from jaxloop.workers import wanted as wanted_workers  # noqa: E402

REF = REPO.parent / "shared" / "reference" / "timeloop"
CASES = {
    "tl05-null": ("tl05-mapper-conv1d+oc-3level-null", ["mapper-src/constraints/null.constraints.yaml",
                                                        "mapper-src/mapper/exhaustive.mapper.yaml"]),
    "tl06": ("tl06-mapper-convlayer-eyeriss-vgg02l5", ["mapper-src/arch/eyeriss_like.yaml"]),
}


def timed(fn, seconds, min_reps=3):
    """Median seconds per call of fn() (blocking), over >= min_reps calls and ~`seconds`."""
    jax.block_until_ready(fn())
    ts, t_end = [], time.time() + seconds
    while len(ts) < min_reps or time.time() < t_end:
        t = time.time()
        jax.block_until_ready(fn())
        ts.append(time.time() - t)
    return float(np.median(ts)), len(ts)


def bench_case(name, chunks, seconds, full_limit):
    folder, extra = CASES[name]
    d = REF / folder
    spec, c = load_mapper_inputs(d / "input.yaml", *(d / e for e in extra))
    t = time.time()
    ms = Mapspace(spec, c)
    build = time.time() - t
    static, karr = compile_spec(spec, load_tables(d / "ERT.yaml", d / "ART.yaml"), keepable=ms.keepable,
                                links=False)  # as `jaxloop map`
    kj = jax.tree_util.tree_map(jnp.asarray, karr)
    obj = Objective.parse(spec, ["delay", "energy"])
    out = {"case": folder, "mapspace_size": str(ms.size), "mapspace_build_s": round(build, 3), "chunks": []}
    rng = np.random.default_rng(0)
    best = None
    for B in chunks:
        ev = Evaluator(ms, static, karr, obj, topk=10, chunk=B)
        t = time.time()
        jax.block_until_ready(ev.range(0, ms.size))
        compile_s = time.time() - t
        n_chunks = max(4, int(seconds * (3e5 if name == "tl05-null" else 4e4) / B))

        def loop(runner):
            """The whole exhaustive loop (pipelined dispatch, host merges), steady state: (best,
            median) mappings/s of 3 runs, CPU seconds of this process per mapping, load."""
            exhaustive(ms, static, karr, obj, progress=False, evaluator=runner, budget=2 * B)  # warm-up (host paths)
            runs = []
            for rep in range(3):
                load = os.getloadavg()[0]
                r0, t = resource.getrusage(resource.RUSAGE_SELF), time.time()
                res = exhaustive(ms, static, karr, obj, progress=False, evaluator=runner, budget=n_chunks * B)
                wall, r1 = time.time() - t, resource.getrusage(resource.RUSAGE_SELF)
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                runs.append((res.reduction.evaluated / wall, res.reduction.evaluated / cpu, load))
            return runs

        loops = loop(ev)  # in this process, one device per core
        n_workers = wanted_workers(None, 1, 0)  # what `jaxloop map` starts for long runs: one per core
        wl, start_s = None, None
        if n_workers and B % n_workers == 0:
            t = time.time()
            with Workers(ev, n_workers) as w:
                start_s = time.time() - t
                wl = loop(w)
        e2e = max(x[0] for x in (wl or loops))
        # pieces on the same chunk, sharded over the host devices like the step: decode alone, kernel
        # alone (on the decoded batch), and the full step (decode + kernel + reduce, results on host)
        start = int(rng.integers(0, max(1, ms.size - B)))
        idx = jnp.asarray(start + np.arange(B), jnp.int64)
        dec = jax.jit(ms._decode_flat)
        t_dec, _ = timed(lambda: dec(ms.arrays, idx), seconds / 4)
        batch = shard(MappingBatch(*(np.asarray(x) for x in dec(ms.arrays, idx))))
        t_eval, _ = timed(lambda: evaluate(static, kj, batch).energy, seconds / 4)
        t_step, _ = timed(lambda: [_host(o, ev.topk) for _, o in ev.range(start, ms.size)], seconds / 4)
        row = {"chunk": B, "compile_s": round(compile_s, 2),
               "exhaustive_loop_mappings_per_s": e2e,
               "workers": n_workers if wl else 0, "workers_start_s": start_s,
               "workers_loop_mappings_per_s": [x[0] for x in wl] if wl else None,
               "in_process_loop_mappings_per_s": [x[0] for x in loops],
               "in_process_loop_mappings_per_cpu_s": float(np.median([x[1] for x in loops])),
               "exhaustive_loop_mappings": n_chunks * B, "load_average_1min": [x[2] for x in (wl or []) + loops],
               "decode_only_mappings_per_s": B / t_dec, "kernel_only_mappings_per_s": B / t_eval,
               "step_mappings_per_s": B / t_step,
               "kernel_share_of_step": t_eval / t_step, "decode_alone_vs_step": t_dec / t_step}
        out["chunks"].append(row)
        rates = lambda runs: "/".join(f"{x[0] / 1e3:,.0f}k" for x in runs)  # noqa: E731
        print(f"{name} chunk {B}: loop {e2e:,.0f}/s; on {n_workers} workers {rates(wl) if wl else '-'} "
              f"(started in {start_s or 0:.1f} s), in process {rates(loops)} (load {loops[0][2]:.1f}); in-process "
              f"step {B / t_step:,.0f}/s, decode {B / t_dec:,.0f}/s, kernel {B / t_eval:,.0f}/s", flush=True)
        if best is None or e2e > best[1]:
            best = (B, e2e, ev)
    B, rate, ev = best
    out["best_chunk"] = B
    out["best_mappings_per_s"] = rate
    est = ms.size / rate
    out["exhaust_estimate_s"] = est
    if est <= full_limit:
        t = time.time()
        res = exhaustive(ms, static, karr, obj, progress=False, evaluator=ev)
        wall = time.time() - t
        out["exhaust_measured_s"] = wall
        out["exhaust_measured_mappings_per_s"] = ms.size / wall
        out["exhaust_best"] = {"index": str(res.best_index), "values": res.best_values}
        print(f"{name}: exhausted {ms.size:,} mappings in {wall:.1f} s ({ms.size / wall:,.0f}/s)", flush=True)
    else:
        out["exhaust_extrapolated"] = True
        print(f"{name}: exhausting {ms.size:,} mappings would take {est:,.0f} s = {est / 86400:.1f} days at "
              f"{rate:,.0f}/s (extrapolated)", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, nargs="*", default=[1 << 12, 1 << 13, 1 << 14, 1 << 15])
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring time per piece")
    ap.add_argument("--full-limit", type=float, default=600.0, help="measure a full exhaustive run below this estimate")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/mapper_throughput.json"))
    args = ap.parse_args()
    res = [bench_case(c, args.chunks, args.seconds, args.full_limit) for c in args.cases]
    doc = {"benchmark": "mapper_throughput", "host": platform.node(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "load_average_at_end": os.getloadavg(), "device": str(jax.devices()[0]),
           "jax": jax.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "settings": vars(args),
           "target_mappings_per_s": 1_000_000, "results": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
