"""One mapping's statistics as a JSON-ready dict or a Timeloop-like text summary.

    static, stats = evaluate_one(spec, table)
    stats_json(spec, static, stats)["pj_per_compute"]["Total"]   # Timeloop's fJ/Compute / 1000
    print(summary_text(spec, static, stats))

Both read row `i` of a batched `Stats` (numpy or jax arrays). Counts are per instance, as in
Timeloop's `Scalar reads (per-instance)`; energies are pJ over all instances. `summary_text`
uses Timeloop's layout and field names, so `jaxloop.timeloop_stats.parse_stats` reads it back.
"""

import math

import numpy as np

from jaxloop.energy.ert import component_name
from jaxloop.model.status import reasons

ACTIONS = ("reads", "fills", "updates")
_SPARSE_COUNTS = ("actual_reads", "gated_reads", "skipped_reads", "actual_fills", "gated_fills", "skipped_fills",
                  "actual_updates", "gated_updates", "skipped_updates", "metadata_reads", "metadata_fills",
                  "metadata_updates")


def _row(stats, i):
    """Row i of every Stats field as numpy (host) values."""
    return {f: np.asarray(getattr(stats, f))[i] for f in stats._fields if getattr(stats, f) is not None}


def _count(x):
    """A count as int when it is an exact integer (JSON-friendly), else float."""
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def _kept(row, l, t):
    """Whether level l keeps dataspace t, from the counts: the kernel leaves every count of a
    bypassed dataspace at 0, and a kept one always has fills, reads or updates."""
    return bool(row["reads"][l, t] + row["fills"][l, t] + row["updates"][l, t] > 0)


def stats_json(spec, static, stats, i=0, keep=None):
    """Mapping `i` as a plain dict (JSON-serializable):

    energy_pJ, cycles, computes, utilization; pj_per_compute {level: pJ/compute incl. leakage,
    ..., compute level: pJ/compute, Total}; levels {level: {dataspace: {reads, fills, updates
    (per instance), utilized_instances, energy_pJ}}} for the dataspaces each level keeps;
    status (readable reasons, empty when valid). Designs with sparse_optimizations also get, per
    level and dataspace, actual/gated/skipped reads, fills, updates and metadata_reads/fills/updates
    (format units) and avg_utilized_instances (utilized_instances is then the max per dataspace, both
    as Timeloop prints them), and top-level algorithmic/actual/gated/skipped computes and
    mac_utilized_instances / mac_avg_utilized_instances.

    `keep` ([L, T] bool, e.g. `batch.keep[i]`) names the kept dataspaces; without it they are
    inferred from the counts (a kept dataspace always has some reads, fills or updates).
    """
    row = _row(stats, i)
    sparse = getattr(static, "sparse", None) is not None  # sparse_optimizations declared
    computes = float(row["computes"])
    per = (lambda e: float(e) / computes) if computes > 0 else (lambda e: math.nan)
    level_energy = row["energy_ds"].sum(axis=-1) + row["leak"]
    names = [component_name(n) for n in static.level_names]
    pj = {n: per(level_energy[l]) for l, n in enumerate(names)}
    pj[component_name(spec.arch.compute.name)] = per(row["compute_energy"])
    pj["Total"] = per(row["energy"])
    keep = None if keep is None else np.asarray(keep, bool)
    levels = {}
    for l, n in enumerate(names):
        levels[n] = {}
        for t, ds in enumerate(static.ds_names):
            if not (keep[l, t] if keep is not None else _kept(row, l, t)):
                continue
            levels[n][ds] = {
                "reads": _count(row["reads"][l, t]),
                "fills": _count(row["fills"][l, t]),
                "updates": _count(row["updates"][l, t]),
                "utilized_instances": _count(row["instances"][l]),
                "energy_pJ": float(row["energy_ds"][l, t]),
            }
            if sparse:  # Sparseloop split (jaxloop/model/sparse.py); reads etc. above are algorithmic
                levels[n][ds].update({f: _count(row[f][l, t]) for f in _SPARSE_COUNTS})
                # spatial skipping: Timeloop's "Utilized instances (max)" and "(average)"
                levels[n][ds]["utilized_instances"] = _count(row["max_instances"][l, t])
                levels[n][ds]["avg_utilized_instances"] = float(row["avg_instances"][l, t])
    out = {
        "energy_pJ": float(row["energy"]),
        "cycles": _count(row["cycles"]),
        "computes": _count(row["computes"]),
        "utilization": float(row["utilization"]),
        "pj_per_compute": pj,
        "levels": levels,
        "status": reasons(int(row["status"])),
    }
    if sparse:
        out.update({f: _count(row[f]) for f in ("algorithmic_computes", "actual_computes", "gated_computes",
                                                "skipped_computes")})
        out["mac_utilized_instances"] = _count(row["mac_instances"])
        out["mac_avg_utilized_instances"] = _count(row["avg_mac_instances"])
    if getattr(static, "analog", None) is not None:  # analog crossbar design: converter counts and energies
        from jaxloop.model.converters import converters_json

        out["converters"] = converters_json(row["converter_counts"], row["converter_energy"])
    return out


def _fmt(x):
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else f"{x:.2f}"


def summary_text(spec, static, stats, i=0, keep=None):
    """Timeloop-like text report of mapping `i`: per level (innermost first, the compute level
    as Level 0) cycles, utilized instances and per-dataspace reads/fills/updates and energy;
    then the summary: utilization, cycles, energy, EDP and fJ/Compute per level."""
    row = _row(stats, i)
    js = stats_json(spec, static, stats, i, keep)
    comp = component_name(spec.arch.compute.name)
    out = [f"jaxloop summary: {spec.workload.name} on {len(static.level_names)} storage levels, mapping {i}", ""]
    out += ["Buffer and Arithmetic Levels", "----------------------------",
            "Level 0", "-------", f"=== {comp} ===", "",
            "    STATS", "    -----",
            f"    Utilized instances      : {_fmt(row['mac_instances'])}",
            f"    Computes (total)        : {_fmt(row['computes'])}",
            f"    Cycles                  : {_fmt(row['compute_cycles'])}",
            f"    Energy (total)          : {float(row['compute_energy']):.2f} pJ", ""]
    for l, name in enumerate(js["levels"]):
        out += [f"Level {l + 1}", "-------", f"=== {name} ===", "",
                "    STATS", "    -----",
                f"    Cycles               : {_fmt(row['level_cycles'][l])}",
                f"    Leakage energy (total) : {float(row['leak'][l]):.2f} pJ"]
        for ds, d in js["levels"][name].items():
            t = static.ds_names.index(ds)
            out += [f"    {ds}:",
                    f"        Partition size                           : {_fmt(row['partition'][l, t])}",
                    f"        Utilized capacity                        : {_fmt(row['tile'][l, t])}",
                    f"        Utilized instances (max)                 : {_fmt(d['utilized_instances'])}",
                    f"        Scalar reads (per-instance)              : {_fmt(d['reads'])}",
                    f"        Scalar fills (per-instance)              : {_fmt(d['fills'])}",
                    f"        Scalar updates (per-instance)            : {_fmt(d['updates'])}",
                    f"        Energy (total)                           : {d['energy_pJ']:.2f} pJ"]
        out.append("")
    energy, cycles = float(row["energy"]), float(row["cycles"])
    out += ["Summary Stats", "-------------"]
    if js["status"]:
        out.append("Status: invalid (" + "; ".join(js["status"]) + ")")
    out += [f"Utilization: {100 * float(row['utilization']):.2f}%",
            f"Cycles: {_fmt(cycles)}",
            f"Energy: {energy * 1e-6:.6g} uJ",
            f"EDP(J*cycle): {energy * 1e-12 * cycles:.3e}",
            "",
            f"Computes = {_fmt(row['computes'])}",
            "fJ/Compute"]
    order = [comp, *js["levels"], "Total"]
    width = max(30, *(len(n) for n in order))
    out += [f"    {n:<{width}} = {1000 * js['pj_per_compute'][n]:.2f}" for n in order]
    if "converters" in js:
        from jaxloop.model.converters import converters_text

        out += [""] + converters_text(row["converter_counts"], row["converter_energy"], float(row["computes"]))
    return "\n".join(out) + "\n"
