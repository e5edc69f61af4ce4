"""`jaxloop map ARCH.yaml NETWORK.yaml ...`: map every layer of a network, one results file.

A network file is a YAML mapping with a top-level `layers:` list (data/workloads/*/network.yaml):

    network: vgg16
    layers:
      - {name: conv1_1, file: conv1_1.yaml, repeats: 1}   # file: relative to the network file

Each layer's problem file takes the network file's place among the FILEs, which are merged and
searched exactly as a single-layer `jaxloop map` would (same options); constraints naming
dimensions a layer lacks (M in a depthwise layer, C..Q in a matmul) are dropped with a warning.

Outputs: a per-layer table and the network total (each layer counted `repeats` times, layers in
sequence); `--out` one results file with a `layer` dimension (`jaxloop.results.concat_layers`);
`--json` {network, layers: {layer: `jaxloop model --json` dict}, repeats, total}; `--map-out
BEST.yaml` one mapping per layer, `BEST.<layer>.yaml`.

Resuming: each finished layer's results are kept in `<out>.<layer>.part.h5` (`<out>` = the first
of --out, --json, --map-out) until the whole network is done, and exhaustive layers checkpoint
to `<out or --checkpoint>.<layer>.ckpt`; the same command run again skips the finished layers
(unless an input or option changed, or with --restart) and resumes the interrupted one.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

from jaxloop.errors import SpecError

_PRIVATE = ("network_fingerprint", "network_choice", "network_stats", "network_mapping")
_OPTIONS = ("search", "objective", "budget", "time", "top", "keep_all", "population", "seed", "ert", "art", "links",
            "no_prune_fanout")


def find_network(paths):
    """(position, path, document) of the network file among `paths`, or None."""
    from jaxloop.spec.yamlio import load_yaml

    found = [(i, Path(p), d) for i, p in enumerate(paths) for d in [load_yaml(p)] if "layers" in d]
    if len(found) > 1:
        raise SpecError(f"more than one network file: {', '.join(str(p) for _, p, _ in found)}")
    if not found:
        return None
    for p in paths:
        if p != paths[found[0][0]] and "problem" in load_yaml(p):
            raise SpecError(f"{p}: has a problem section, and {found[0][1]} lists the layers: give one of them")
    return found[0]


def read_network(path, doc):
    """(network name, [(name, problem file, repeats)]): every problem of the file at once."""
    from jaxloop.spec.yamlio import Source

    src = Source()
    src.files["layers"] = (str(path), doc["layers"])
    problems, layers = [], []
    items = doc["layers"]
    if not isinstance(items, list) or not items:
        raise SpecError(f"{src.where('layers')}: expected a non-empty list of {{name, file, repeats}}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"{src.where('layers', i)}: expected a mapping {{name, file, repeats}}")
            continue
        file = item.get("file")
        if not file:
            problems.append(f"{src.where('layers', i)}: missing 'file' (the layer's problem YAML, relative to "
                            f"{path})")
            continue
        full = (path.parent / str(file)).resolve()
        if not full.is_file():
            problems.append(f"{src.where('layers', i, 'file')}: {file} not found (looked for {full})")
        name = str(item.get("name") or Path(str(file)).stem)
        reps = item.get("repeats", 1)
        if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
            problems.append(f"{src.where('layers', i, 'repeats')}: expected a positive integer, got {reps!r}")
        if name in [n for n, _, _ in layers]:
            problems.append(f"{src.where('layers', i, 'name')}: layer name {name!r} used twice")
        layers.append((name, full, reps))
    if problems:
        raise SpecError(problems)
    return str(doc.get("network") or path.parent.name or path.stem), layers


def _safe(name):
    return re.sub(r"[^\w.+-]", "_", name)


def _fingerprint(args, files):
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).read_bytes())
    h.update(json.dumps({k: getattr(args, k, None) for k in _OPTIONS}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def _best_row(ds, batch):
    """Row of `ds` holding the mapping `batch` (1 row), or -1."""
    from jaxloop.results import dataset_to_batch

    rows = dataset_to_batch(ds)
    same = np.ones(ds.sizes["mapping"], bool)
    for a, b in zip(rows, batch):
        a, b = np.asarray(a), np.asarray(b)
        same &= (a.reshape(len(a), -1) == b.reshape(1, -1)).all(axis=1)
    hit = np.flatnonzero(same)
    return int(hit[0]) if len(hit) else -1


def _with_best(ds, spec, p, res):
    """`ds` and the row of the search's best mapping in it (prepended when the top-k lacks it:
    a lexicographic objective's 0.1 % tolerance can prefer a mapping outside the strict top-k)."""
    import jax
    import xarray as xr

    from jaxloop import results
    from jaxloop.model.evaluate import evaluate

    row = _best_row(ds, res.best_batch)
    if row >= 0:
        return ds, row
    st = jax.tree_util.tree_map(np.asarray, evaluate(p.static_out, p.karr, res.best_batch))
    idx = [res.best_index if isinstance(res.best_index, int) else -1]
    one = results.to_dataset(spec, p.static_out, st, res.best_batch, table=p.table,
                             index=idx if "mapspace_index" in ds.coords else None)
    out = xr.concat([one, ds], dim="mapping", combine_attrs="override")
    out.attrs = dict(ds.attrs)
    return out.assign_coords(mapping=np.arange(out.sizes["mapping"], dtype=np.int64)), 0


def _read_part(path):
    """A finished layer's dataset from an earlier run, or None when it cannot be read."""
    from jaxloop import results

    try:
        return results.read_dataset(path)
    except Exception as e:  # noqa: BLE001  (a half-copied or foreign file: map the layer again)
        print(f"note: cannot read {path} ({type(e).__name__}); mapping the layer again", file=sys.stderr)
        return None


def run(args, pos, path, doc):
    """Map every layer of the network file `path` (FILE number `pos`); see the module docstring."""
    from jaxloop import results
    from jaxloop.commands.map import load_layer, output_base, prepare, results_dataset, run_search
    from jaxloop.model.evaluate import evaluate_one
    from jaxloop.report import stats_json

    name, layers = read_network(path, doc)
    said = set()

    def say(msg):  # each warning once per network, not once per layer
        if msg not in said:
            said.add(msg)
            print(msg, file=sys.stderr)

    def files_of(problem):
        return [*args.files[:pos], problem, *args.files[pos + 1:]]

    n = len(layers)
    if args.size:
        for i, (lname, problem, _) in enumerate(layers):
            print(f"layer {i + 1}/{n} {lname}:")
            print(load_layer(args, files_of(problem), drop_absent_dims=True, say=say)[1].size_text())
        return 0
    base = output_base(args, path)
    ck_base = str(args.checkpoint) if args.checkpoint else base
    print(f"network {name}: {n} layers ({path})")
    datasets, extras, objective = [], [], None
    for i, (lname, problem, reps) in enumerate(layers):
        files = files_of(problem)
        part = Path(f"{base}.{_safe(lname)}.part.h5")
        fp = _fingerprint(args, files)
        ds = _read_part(part) if part.exists() and not args.restart else None
        if ds is not None and ds.attrs.get("network_fingerprint") == fp:
            print(f"layer {i + 1}/{n} {lname}: done in an earlier run (kept in {part})")
            objective = objective or ds.attrs.get("search_objective")
        else:
            spec, ms = load_layer(args, files, drop_absent_dims=True, say=say)
            p = prepare(args, spec, ms, say=say)
            if objective is None:
                objective = p.objective.text
                kind = "lexicographic, 0.1% tolerance" if p.objective.lexicographic else "weighted sum"
                print(f"objective: {objective} ({kind})")
            print(f"layer {i + 1}/{n} {lname}: mapspace {ms.size:,} mappings, search {p.alg}", flush=True)
            ck = Path(f"{ck_base}.{_safe(lname)}.ckpt") if p.alg == "exhaustive" else None
            res = run_search(args, ms, p, ck)
            if res.interrupted:
                print(f"interrupted in layer {lname}: run the same command to resume (finished layers are kept "
                      f"in {base}.<layer>.part.h5)")
                return 130
            ds = results_dataset(spec, p.static_out, p.karr, p.table, ms, res, args.keep_all)
            if ds is None:
                print(f"layer {lname}: no valid mapping found")
                datasets.append(None)
                extras.append(None)
                continue
            ds, row = _with_best(ds, spec, p, res)
            best = res.best_batch.mapping(0)
            static1, stats1 = evaluate_one(spec, p.table, best)
            ds.attrs.update(network_fingerprint=fp, network_choice=row,
                            network_stats=json.dumps(stats_json(spec, static1, stats1, keep=best.keep)),
                            network_mapping=json.dumps(best.to_yaml_list(spec.arch, spec.workload)))
            results.write_dataset(ds, part)
        datasets.append(ds)
        extras.append({k: ds.attrs.pop(k) for k in _PRIVATE})
        print(f"  best: {_fmt_row(ds, int(extras[-1]['network_choice']))}")
    return _finish(args, name, path, layers, datasets, extras, objective, base)


def _fmt_row(ds, row):
    e, c, m = (float(ds[v].values[row]) for v in ("energy", "cycles", "computes"))
    return f"energy {e:.6g} pJ, {c:,.0f} cycles, {e / m:.4g} pJ/MAC"


def _table(layers, datasets, extras):
    """Per-layer rows and the network total as text; returns (text, totals dict)."""
    head = ("layer", "repeats", "energy pJ", "cycles", "pJ/MAC", "evaluated", "time s")
    rows, tot = [], {"energy_pJ": 0.0, "cycles": 0.0, "computes": 0.0}
    evaluated = elapsed = 0.0
    for (lname, _, reps), ds, ex in zip(layers, datasets, extras):
        if ds is None:
            rows.append((lname, str(reps), "no valid mapping", "", "", "", ""))
            for k in tot:
                tot[k] = float("nan")
            continue
        r = int(ex["network_choice"])
        e, c, m = (float(ds[v].values[r]) for v in ("energy", "cycles", "computes"))
        ev, t = int(ds.attrs.get("search_evaluated", 0)), float(ds.attrs.get("search_elapsed_s", 0.0))
        evaluated += ev
        elapsed += t
        tot["energy_pJ"] += reps * e
        tot["cycles"] += reps * c
        tot["computes"] += reps * m
        rows.append((lname, str(reps), f"{e:.6g}", f"{c:,.0f}", f"{e / m:.4g}", f"{ev:,}", f"{t:.1f}"))
    pj = tot["energy_pJ"] / tot["computes"] if tot["computes"] else float("nan")
    rows.append(("total", "", f"{tot['energy_pJ']:.6g}", f"{tot['cycles']:,.0f}", f"{pj:.4g}", f"{int(evaluated):,}",
                 f"{elapsed:.1f}"))
    w = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(head)]
    line = lambda r: "  ".join(x.ljust(w[0]) if j == 0 else x.rjust(w[j]) for j, x in enumerate(r))  # noqa: E731
    text = [line(head), line(["-" * x for x in w]), *map(line, rows[:-1]), line(["-" * x for x in w]), line(rows[-1])]
    return "\n".join(text), tot


def _finish(args, name, path, layers, datasets, extras, objective, base):
    from jaxloop import results
    from jaxloop.commands.map import _yaml_dump

    text, tot = _table(layers, datasets, extras)
    print(f"\nnetwork {name} (each layer x repeats, layers in sequence):")
    print(text)
    ok = all(ds is not None for ds in datasets)
    names = [lname for lname, _, _ in layers]
    if args.out:
        if ok:
            ds = results.concat_layers(datasets, names, [r for _, _, r in layers], objective=objective or "energy",
                                       choice=[int(x["network_choice"]) for x in extras],
                                       attrs={"network": name, "network_file": str(path)})
            for k, unit, long in (("search_evaluated", "1", "mappings evaluated by the search"),
                                  ("search_elapsed_s", "s", "search time")):
                ds[k] = ("layer", np.array([float(d.attrs.get(k, np.nan)) for d in datasets]),
                         {"units": unit, "long_name": long})
            results.write_dataset(ds, args.out)
            print(f"wrote {args.out}")
        else:
            print("warning: a layer has no valid mapping; results file not written", file=sys.stderr)
    if args.json:
        out = {"network": name,
               "layers": {n: (json.loads(x["network_stats"]) if x else None) for n, x in zip(names, extras)},
               "repeats": {n: r for n, _, r in layers},
               "total": {k: (v if np.isfinite(v) else None) for k, v in tot.items()}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.map_out:
        m = Path(args.map_out)
        for n, x in zip(names, extras):
            if x:
                _yaml_dump({"mapping": json.loads(x["network_mapping"])}, m.with_name(f"{m.stem}.{_safe(n)}{m.suffix}"))
        print(f"wrote {m.with_name(f'{m.stem}.<layer>{m.suffix}')} ({sum(x is not None for x in extras)} layers)")
    for lname, _, _ in layers:
        Path(f"{base}.{_safe(lname)}.part.h5").unlink(missing_ok=True)
    return 0 if ok else 1
