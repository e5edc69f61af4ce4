"""Kernel throughput: mappings/s of evaluate() on random valid mappings of the tl06 case
(VGG-16 conv layer, C128 M256 P56 Q56 R3 S3, on the Eyeriss-like design).

    .venv/bin/python benchmarks/throughput.py [--sizes 1000 10000 100000 1000000] [--chunk 2048]
                                              [--repeat 3] [--min-seconds 1]

Every mapping keeps what the reference mapping keeps (tl06's constraints fix the spads to one
dataspace each), passed to the compiler as `keepable` so the kernel skips impossible levels.
Three configurations: `scored` = energy, cycles and validity without link transfers (what the
mapper's search runs by default), `scored+links` = the same with Timeloop's link transfers, and
`stats+links` = every Stats field with links (timeloop-model's full output). Compile time is
reported apart. A batch runs as calls of --chunk mappings (the last one smaller), dispatched
round-robin to the devices (every CPU core is a JAX device, see jaxloop/__init__.py) as the
mapper runs its steps: independent calls, no sharded program, so no cross-device synchronisation.
Prints a table and writes benchmarks/results/throughput-<device>.json.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

import jaxloop
from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import load_tables
from jaxloop.mapspace import MappingBatch
from jaxloop.model.evaluate import _evaluate, evaluate


def scored(static):
    """evaluate() reduced to what a search consumes (energy, cycles, status): XLA drops the
    Stats fields nobody reads (e.g. all-zero sparse terms of a dense design), not the model."""
    return jax.jit(lambda arr, b: (lambda s: (s.energy, s.cycles, s.status))(_evaluate(static, arr, b)))

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT.parent / "shared" / "reference" / "timeloop" / "tl06-mapper-convlayer-eyeriss-vgg02l5"


def ordered_factorizations(n, k):
    """All k-tuples of positive integers with product n."""
    if k == 1:
        return [(n,)]
    return [(d, *rest) for d in range(1, n + 1) if n % d == 0 for rest in ordered_factorizations(n // d, k - 1)]


def random_mappings(spec, count, rng):
    """Random mappings with the reference mapping's bypass choices: every bound split over the
    temporal slots and the spatial X/Y slots of levels with fan-out, random loop orders."""
    arch, wl = spec.arch, spec.workload
    L, D = len(arch.levels), len(wl.dims)
    slots = [("t", l) for l in range(L)] + [(a, l) for l in range(L) for a, f in zip("xy", arch.fanout(l)) if f > 1]
    out = {k: np.ones((count, L, D), np.int64) for k in ("t", "x", "y")}
    for d, n in enumerate(wl.bounds):
        table = np.array(ordered_factorizations(n, len(slots)))
        pick = table[rng.integers(0, len(table), count)]
        for s, (kind, l) in enumerate(slots):
            out[kind][:, l, d] = pick[:, s]
    perm = np.argsort(rng.random((count, L, D)), axis=2)
    keep = np.broadcast_to(spec.mapping.keep, (count, L, len(wl.dataspaces))).copy()
    return MappingBatch(out["t"], out["x"], out["y"], perm, keep)


def valid_pool(static, arr, spec, want, rng, chunk):
    pool = []
    have = 0
    for _ in range(200):
        cand = random_mappings(spec, chunk, rng)
        ok = np.asarray(evaluate(static, arr, cand).status) == 0
        pool.append(cand.take(np.nonzero(ok)[0]))
        have += int(ok.sum())
        if have >= want:
            break
    batch = MappingBatch(*(np.concatenate([getattr(p, f) for p in pool]) for f in MappingBatch._fields))
    return batch, have / (chunk * len(pool))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    ap.add_argument("--chunk", type=int, default=2048, help="mappings per kernel call")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=1.0, help="keep repeating a row until this much time is spent")
    args = ap.parse_args()
    spec = jaxloop.load_spec(CASE / "input.yaml")
    table = load_tables(CASE / "ERT.yaml")
    static, arr = compile_spec(spec, table, keepable=spec.mapping.keep)  # links on: Timeloop's default
    static_n = compile_spec(spec, table, keepable=spec.mapping.keep, links=False)[0]
    rng = np.random.default_rng(0)
    devices = jax.local_devices()
    t0 = time.perf_counter()
    jax.block_until_ready(evaluate(static, arr, random_mappings(spec, args.chunk, rng)).energy)
    compile_s = time.perf_counter() - t0
    pool, valid_frac = valid_pool(static_n, arr, spec, min(max(args.sizes), 65536), rng, 8192)
    arrs = [jax.device_put(arr, d) for d in devices]
    configs = (("scored", scored(static_n), lambda f, a, x: f(a, x)[0]),
               ("scored+links", scored(static), lambda f, a, x: f(a, x)[0]),
               ("stats+links", None, lambda f, a, x: evaluate(static, a, x).energy))
    rows = []
    for B in args.sizes:
        # ceil(B / chunk) calls, round-robin over the devices, each on its own piece of the pool
        sizes = [min(args.chunk, B - s) for s in range(0, B, args.chunk)]
        pieces = {(n, i): MappingBatch(*(jax.device_put(np.take(np.asarray(a), np.arange(i * n, (i + 1) * n), axis=0,
                                                                mode="wrap"), d) for a in pool))
                  for n in set(sizes) for i, d in enumerate(devices)}
        row = {"batch": B}
        for name, f, call in configs:
            for (n, i), x in pieces.items():  # compile every shape outside the timing
                jax.block_until_ready(call(f, arrs[i], x))
            best, spent, reps = float("inf"), 0.0, 0
            # best of --repeat runs, and of as many more as fit in --min-seconds (small batches
            # take milliseconds, where one noisy run decides a best of three)
            while reps < (args.repeat if B < 1_000_000 else 1) or spent < args.min_seconds:
                t = time.perf_counter()
                outs = [call(f, arrs[k % len(devices)], pieces[n, k % len(devices)]) for k, n in enumerate(sizes)]
                jax.block_until_ready(outs)
                dt = time.perf_counter() - t
                best, spent, reps = min(best, dt), spent + dt, reps + 1
            row[f"{name}_seconds"] = best
            row[f"{name}_mappings_per_s"] = B / best
        rows.append(row)
    device = devices[0]
    n_dev = len(devices)
    result = {"case": CASE.name, "device": str(device), "devices": n_dev,
              "platform": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "jax": jax.__version__, "chunk": args.chunk,
              "compile_s": compile_s, "valid_fraction_of_random": valid_frac, "rows": rows}
    print(f"tl06 kernel throughput on {n_dev} x {device.platform} ({args.chunk} per call, compile {compile_s:.1f} s, "
          f"{100 * valid_frac:.1f} % of random mappings valid, load average {os.getloadavg()[0]:.1f})")
    print(f"{'batch':>10} " + " ".join(f"{name + '/s':>16}" for name, _, _ in configs))
    for r in rows:
        print(f"{r['batch']:>10,} " + " ".join(f"{r[name + '_mappings_per_s']:>16,.0f}" for name, _, _ in configs))
    kind = "gpu" if device.platform == "gpu" else "cpu"
    out = ROOT / "benchmarks" / "results" / f"throughput-{kind}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
