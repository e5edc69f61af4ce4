"""`jaxloop map FILE.yaml...`: Timeloop's timeloop-mapper, batched.

    jaxloop map arch.yaml prob.yaml constraints.yaml mapper.yaml --ert ERT.yaml \\
        --search exhaustive --objective delay,energy --json best.json --map-out best.yaml --out results.h5
    jaxloop map ... --size          # exact mapspace size and its factors, then exit

Exhaustive runs checkpoint (next index + partial reductions) to `<first output>.ckpt` (or
`--checkpoint PATH`) every `--checkpoint-every` seconds and on Ctrl-C; the same command run
again resumes there. A finished run removes its checkpoint.

A network file (top-level `layers:`) among the FILEs maps every layer in turn
(jaxloop.commands.network).
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from jaxloop.constraints import load_mapper_inputs
from jaxloop.errors import SpecError
from jaxloop.mapspace import Mapspace, MappingBatch
from jaxloop.search import ALGORITHMS, BIT_NAMES, MapperSettings, Objective, histogram_edges, search

AUTO_EXHAUSTIVE = 20_000_000  # without --search or a mapper algorithm: enumerate spaces up to this size


def add_parser(subparsers):
    p = subparsers.add_parser("map", help="search the mapspace for the best mapping (timeloop-mapper)",
                              description="Search the mapspace of an architecture and workload under Timeloop "
                                          "constraints (Timeloop's timeloop-mapper).")
    p.add_argument("files", nargs="+", metavar="FILE.yaml",
                   help="Timeloop inputs merged in order: architecture (v0.4 `nodes` tree with its constraints, or "
                        "timeloopfe's processed `subtree` form, which wins when both are given), problem, mapspace "
                        "constraints, mapper settings; a network file (top-level `layers:`) in place of the problem "
                        "maps every layer")
    p.add_argument("--ert", metavar="ERT.yaml", help="Accelergy energy reference table (else estimated)")
    p.add_argument("--art", metavar="ART.yaml", help="Accelergy area reference table")
    p.add_argument("--search", choices=ALGORITHMS, help="search algorithm (default: the mapper YAML's algorithm, else "
                   f"exhaustive up to {AUTO_EXHAUSTIVE:,} mappings, else hybrid)")
    p.add_argument("--objective", metavar="METRICS",
                   help="energy | delay | edp | last_level_accesses | accesses-<level> | ordered_accesses; "
                        "comma-separated = lexicographic with Timeloop's 0.1%% tolerance (e.g. delay,energy); "
                        "'0.5*energy+delay' = weighted sum (default: the mapper YAML's optimization_metrics, else edp)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--budget", type=int, metavar="N", help="evaluate at most N mappings")
    g.add_argument("--time", type=float, metavar="S",
                   help="stop after S seconds (compilation included; a search always evaluates its first chunk or "
                        "population)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="keep the K best mappings (default 10)")
    p.add_argument("--keep-all", action="store_true", help="keep every evaluated mapping (exhaustive; written to "
                   "--out)")
    p.add_argument("--out", metavar="results.h5", help="write the top-K (or, with --keep-all, every) mapping as an "
                   "xarray/HDF5 results file")
    p.add_argument("--map-out", metavar="BEST.yaml", help="write the best mapping as Timeloop mapping YAML")
    p.add_argument("--json", metavar="BEST.json", help="write the best mapping's statistics (as `jaxloop model --json`)")
    p.add_argument("--size", action="store_true", help="print the exact mapspace size and its factors, then exit")
    p.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="mappings per step, split over the local devices or workers (default 8192 per device, 1024 "
                        "for sparse designs)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="exhaustive: run the steps on N worker processes, one device each, pinned to a core (default: "
                        "one per core on CPUs for runs of at least 2**24 mappings; 0 = in this process). Same "
                        "results either way")
    p.add_argument("--population", type=int, default=1 << 12, metavar="N", help="hybrid: population size")
    p.add_argument("--seed", type=int, default=0, help="random seed (random, random-pruned, hybrid)")
    p.add_argument("--checkpoint", metavar="PATH", help="exhaustive checkpoint file (default: next to the output)")
    p.add_argument("--checkpoint-every", type=float, default=30.0, metavar="S", help="seconds between checkpoints")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--links", action="store_true",
                   help="search with Timeloop's link transfers in the kernel (exact, but O(fan-out^2) work and memory "
                        "per mapping); by default the search ranks mappings without them and the best mapping, its "
                        "JSON and the results file are evaluated with them")
    p.add_argument("--no-prune-fanout", action="store_true",
                   help="keep spatial factors that exceed every usable mesh axis in the mapspace (always so for "
                        "designs with spatial skipping, as in Timeloop's mapper)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def output_base(args, first):
    """Where a run keeps its side files (checkpoints, finished layers): the first of --out, --json,
    --map-out, else `<stem of first>.jaxloop-map` in the working directory."""
    for out in (args.out, args.json, args.map_out):
        if out:
            return str(out)
    return str(Path.cwd() / f"{Path(first).stem}.jaxloop-map")


def checkpoint_path(args):
    return Path(args.checkpoint) if args.checkpoint else Path(output_base(args, args.files[0]) + ".ckpt")


def _yaml_dump(obj, path):
    from ruamel.yaml import YAML

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        y.dump(obj, f)


def _attrs(res, ms):
    s = res.summary()
    attrs = {f"search_{k}": (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in s.items()
             if v is not None}
    red = res.reduction
    attrs["search_hist_energy_counts"] = red.hist_energy.tolist()
    attrs["search_hist_energy_edges_pJ"] = histogram_edges("energy")[1:-1].tolist()
    attrs["search_hist_cycles_counts"] = red.hist_cycles.tolist()
    attrs["search_hist_cycles_edges"] = histogram_edges("cycles")[1:-1].tolist()
    attrs["mapspace"] = json.dumps({k: (str(v) if isinstance(v, int) else v) for k, v in ms.describe().items()},
                                   default=str)
    return attrs


def results_dataset(spec, static, karr, table, ms, res, keep_all):
    """The top-k (or, with `keep_all`, every evaluated) mapping evaluated again (full Stats) as a
    jaxloop.results dataset, with the search summary in its attributes; None if none is valid."""
    import jax
    import xarray as xr

    from jaxloop import results
    from jaxloop.model.evaluate import evaluate

    if keep_all and res.all_rows is not None and len(res.all_rows["index"]):
        index = np.asarray(res.all_rows["index"], np.int64)
    elif res.top_batch is not None:
        index = np.array([i if i is not None else -1 for i in res.top_index], np.int64)
    else:
        index = np.zeros(0, np.int64)
    parts = []
    if keep_all and res.all_rows is not None:
        chunk = 1 << 14
        for s in range(0, len(index), chunk):
            b = ms.decode(index[s:s + chunk])
            st = evaluate(static, karr, b)
            parts.append(results.to_dataset(spec, static, jax.tree_util.tree_map(np.asarray, st),
                                            MappingBatch(*(np.asarray(x) for x in b)), table=table,
                                            index=index[s:s + chunk]))
        ds = xr.concat(parts, dim="mapping") if len(parts) > 1 else parts[0]
        ds = ds.assign_coords(mapping=np.arange(ds.sizes["mapping"], dtype=np.int64))
    elif res.top_batch is not None:
        st = evaluate(static, karr, res.top_batch)
        ds = results.to_dataset(spec, static, jax.tree_util.tree_map(np.asarray, st), res.top_batch, table=table,
                                index=index)
    else:
        return None
    ds.attrs.update(results._legal_attrs(_attrs(res, ms)))
    return ds


def write_results(path, spec, static, karr, table, ms, res, keep_all):
    """`results_dataset` written atomically to `path` (None, with a warning, if nothing is valid)."""
    from jaxloop import results

    ds = results_dataset(spec, static, karr, table, ms, res, keep_all)
    if ds is None:
        print("warning: no valid mapping found; results file not written", file=sys.stderr)
        return None
    return results.write_dataset(ds, path)


def load_layer(args, files, drop_absent_dims=False, say=None):
    """(spec, mapspace) of the merged FILEs; constraint warnings go to `say` (default: stderr)."""
    say = say or (lambda m: print(m, file=sys.stderr))
    spec, constraints = load_mapper_inputs(*files, drop_absent_dims=drop_absent_dims)
    for w in constraints.warnings:
        say(f"warning: {w}")
    return spec, Mapspace(spec, constraints, prune_fanout=False if args.no_prune_fanout else None)


def prepare(args, spec, ms, say=None):
    """Mapper settings, objective, energy table, compiled spec and search algorithm for one layer."""
    from jaxloop.compiler import compile_spec
    from jaxloop.energy.tables import tables_for

    say = say or (lambda m: print(m, file=sys.stderr))
    settings = MapperSettings.from_doc(spec.doc)
    for w in settings.warnings:
        say(f"note: {w}")
    objective = Objective.parse(spec, args.objective if args.objective else settings.metrics)
    table = tables_for(spec, args.ert, args.art)
    static, karr = compile_spec(spec, table, keepable=ms.keepable, links=args.links)  # the search kernel
    static_out = static if args.links else compile_spec(spec, table)[0]  # what is reported: Timeloop's full model
    alg = args.search or settings.algorithm or ("exhaustive" if ms.flat and ms.size <= AUTO_EXHAUSTIVE else "hybrid")
    if alg == "exhaustive" and not ms.flat:
        raise SpecError(f"the mapspace has {ms.size:.3e} mappings, too many to enumerate: use --search hybrid or random")
    return SimpleNamespace(settings=settings, objective=objective, table=table, static=static, karr=karr, alg=alg,
                           static_out=static_out)


def run_search(args, ms, p, checkpoint):
    """Run the search `p.alg` with the command's options; print what it evaluated."""
    if args.chunk is None:
        import jax

        # the sparse kernel's intermediates outgrow the caches sooner: it is fastest in ~1k batches
        per_device = 1024 if p.static.sparse is not None else 8192
        args.chunk = per_device * len(jax.local_devices())
    settings, alg = p.settings, p.alg
    kw = dict(topk=args.top, budget=args.budget, time_limit=args.time, progress=not args.no_progress)
    if alg == "exhaustive":
        kw.update(chunk=args.chunk, keep_all=args.keep_all, checkpoint=checkpoint,
                  checkpoint_every=args.checkpoint_every, restart=args.restart, workers=args.workers)
    elif alg == "hybrid":
        kw.update(population=args.population, seed=args.seed, search_size=settings.search_size or None)
    else:
        kw.update(chunk=args.chunk, seed=args.seed, victory_condition=settings.victory_condition or None,
                  timeout=settings.timeout or None, search_size=settings.search_size or None)
        if alg == "random-pruned":
            kw["perms_per_if"] = settings.max_permutations_per_if_visit
        if args.keep_all:
            print("note: --keep-all applies to exhaustive search only", file=sys.stderr)
    res = search(alg, ms, p.static, p.karr, p.objective, **kw)
    red = res.reduction
    rate = red.evaluated / res.elapsed if res.elapsed > 0 else 0.0
    print(f"evaluated {red.evaluated:,} mappings in {res.elapsed:.1f} s ({rate:,.0f}/s), {red.valid:,} valid; "
          f"stopped: {res.stop_reason}")
    bad = {BIT_NAMES[b]: int(c) for b, c in enumerate(red.invalid_bits) if c}
    if bad:
        print("invalid mappings by reason: " + ", ".join(f"{k} {v:,}" for k, v in bad.items()))
    if res.interrupted and alg == "exhaustive":
        print(f"interrupted: checkpoint left at {checkpoint}; run the same command to resume")
    return res


def run(args):
    from jaxloop.commands import network

    net = network.find_network(args.files)
    if net is not None:
        return network.run(args, *net)
    spec, ms = load_layer(args, args.files)
    if args.size:
        print(ms.size_text())
        return 0

    from jaxloop.model.evaluate import evaluate_one
    from jaxloop.report import stats_json, summary_text

    p = prepare(args, spec, ms)
    objective, table, static, karr, alg = p.objective, p.table, p.static, p.karr, p.alg
    print(f"mapspace: {ms.size:,} mappings; search: {alg}; objective: {objective.text} "
          f"({'lexicographic, 0.1% tolerance' if objective.lexicographic else 'weighted sum'})")
    res = run_search(args, ms, p, checkpoint_path(args) if alg == "exhaustive" else None)
    if res.best_batch is None:
        print("no valid mapping found")
        return 130 if res.interrupted else 1
    best = res.best_batch.mapping(0)
    vals = ", ".join(f"{n} = {v:.6g}" for n, v in zip(objective.columns, res.best_values))
    idx = f" (mapspace index {res.best_index})" if res.best_index is not None else ""
    print(f"best{idx}: {vals}")
    static1, stats1 = evaluate_one(spec, table, best)
    print(summary_text(spec, static1, stats1, keep=best.keep))
    mapping_yaml = {"mapping": best.to_yaml_list(spec.arch, spec.workload)}
    if args.map_out:
        _yaml_dump(mapping_yaml, args.map_out)
        print(f"wrote {args.map_out}")
    if args.json:
        out = stats_json(spec, static1, stats1, keep=best.keep)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.out:
        if write_results(args.out, spec, p.static_out, karr, table, ms, res, args.keep_all):
            print(f"wrote {args.out}")
    if res.interrupted:
        return 130
    return 0


def main(argv=None):
    """`python -m jaxloop.commands.map FILE.yaml ...` (the same as `jaxloop map ...`)."""
    from jaxloop.cli import main as cli_main

    return cli_main(["map", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
