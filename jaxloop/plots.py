"""Plots of a results dataset (docs/results.md): mapping spread, energy/delay Pareto front,
per-level energy breakdown. Each returns a matplotlib Figure drawn with the Agg canvas (no
pyplot, no global backend state); `fig.savefig("x.png")` writes it.

    ds = read_dataset("results.h5")
    spread(ds).savefig("spread.png")
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxloop.results import best_index, layer_dataset

WITHIN = 0.01  # "near-optimal": energy within 1 % of the best


def _figure(size=(7.0, 4.2)):
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _one_layer(ds, layer):
    if "layer" not in ds.dims:
        return ds
    names = [str(x) for x in ds.layer.values]
    if layer is None and len(names) == 1:
        layer = names[0]
    if layer is None:
        raise ValueError(f"the dataset holds {len(names)} layers; choose one ({', '.join(names)})")
    if str(layer) not in names:
        raise ValueError(f"no layer {layer!r}; layers are {', '.join(names)}")
    return layer_dataset(ds, layer)


def _valid(ds):
    ok = ds.status.values == 0
    if not ok.any():
        raise ValueError(f"none of the {ok.size} mappings is valid")
    return ok


def spread_data(ds):
    """(efficiency sorted best first, within-1% mask, min-DRAM mask) over the valid mappings.
    Efficiency = best energy / energy, so the optimum is 1."""
    ok = _valid(ds)
    energy = ds.energy.values[ok]
    dram = ds.last_level_accesses.values[ok]
    order = np.argsort(energy, kind="stable")
    eff = energy.min() / energy[order]
    near = energy[order] <= energy.min() * (1 + WITHIN)
    min_dram = dram[order] == dram.min()
    return eff, near, min_dram


def spread(ds, layer=None):
    """Every valid mapping's energy efficiency normalized to the best, sorted (best first); the
    optimum, the mappings within 1 % of it and the set with the fewest DRAM (outermost-level)
    accesses are marked."""
    ds = _one_layer(ds, layer)
    eff, near, min_dram = spread_data(ds)
    n = eff.size
    x = np.arange(1, n + 1)
    fig, ax = _figure()
    ax.plot(x, eff, color="0.35", lw=1.0, rasterized=n > 5000, label=f"{n:,} valid mappings")
    ax.scatter(x[near], eff[near], s=14, color="tab:green", zorder=3,
               label=f"within {WITHIN:.0%} of optimum ({int(near.sum()):,})")
    ax.scatter(x[min_dram], eff[min_dram], s=10, marker="x", color="tab:red", zorder=4,
               label=f"minimum DRAM accesses ({int(min_dram.sum()):,})")
    ax.scatter([1], [1.0], s=120, marker="*", color="gold", edgecolor="k", zorder=5, label="optimum")
    ax.set_xscale("log" if n > 100 else "linear")
    ax.set_xlabel("mappings, sorted by energy efficiency")
    ax.set_ylabel("energy efficiency / best")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{ds.attrs.get('workload', '')}: {1 / eff.min():.3g}x spread in energy efficiency")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def pareto_front(energy, cycles):
    """Indices of the points no other point beats in both energy and cycles, by cycles."""
    energy, cycles = np.asarray(energy, float), np.asarray(cycles, float)
    order = np.lexsort((energy, cycles))  # by cycles, then energy
    front, best = [], np.inf
    for i in order:
        if energy[i] < best:
            front.append(i)
            best = energy[i]
    return np.array(front, np.int64)


def pareto(ds, layer=None):
    """Energy against cycles of every valid mapping, with the Pareto front."""
    ds = _one_layer(ds, layer)
    ok = _valid(ds)
    e, c = ds.energy.values[ok] * 1e-6, ds.cycles.values[ok]
    f = pareto_front(e, c)
    fig, ax = _figure()
    ax.scatter(c, e, s=4, alpha=0.4, color="tab:blue", rasterized=e.size > 5000, label=f"{e.size:,} valid mappings")
    ax.step(c[f], e[f], where="post", color="tab:red", lw=1.2)
    ax.scatter(c[f], e[f], s=18, color="tab:red", zorder=3, label=f"Pareto front ({f.size})")
    edp = np.argmin(e * c)
    ax.scatter([c[edp]], [e[edp]], s=120, marker="*", color="gold", edgecolor="k", zorder=4, label="min EDP")
    for axis, vals in (("x", c), ("y", e)):
        if vals.max() > 20 * vals.min():
            getattr(ax, f"set_{axis}scale")("log")
    ax.set_xlabel("cycles")
    ax.set_ylabel("energy (uJ)")
    ax.set_title(f"{ds.attrs.get('workload', '')}: energy vs delay")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def breakdown_data(ds, i):
    """{component: {part: pJ/MAC}} of mapping i: per level its dataspaces and leakage, and the MACs."""
    computes = float(ds.computes.values[i])
    out = {}
    for l, name in enumerate(ds.level.values):
        parts = {str(t): float(ds.dataspace_energy.values[i, l, k]) / computes
                 for k, t in enumerate(ds.dataspace.values)}
        parts["leakage"] = float(ds.leakage.values[i, l]) / computes
        out[str(name)] = parts
    out[ds.attrs.get("compute_level", "MAC")] = {"compute": float(ds.compute_energy.values[i]) / computes}
    return out


def breakdown(ds, i=None, layer=None, objective="energy"):
    """Energy per level (stacked by dataspace, plus leakage) and of the MACs, in pJ per MAC, of
    mapping `i` (default: the best valid mapping by `objective`). A network dataset without a
    `layer` shows each layer's chosen mapping, stacked by level, in total pJ."""
    if "layer" in ds.dims and layer is None and ds.sizes["layer"] > 1:
        return _network_breakdown(ds)
    ds = _one_layer(ds, layer)
    if i is None:
        i = best_index(ds, objective)
        if i < 0:
            raise ValueError(f"none of the {ds.sizes['mapping']} mappings is valid; pick one with i=")
    data = breakdown_data(ds, i)
    labels = list(data)
    keys = [*(str(t) for t in ds.dataspace.values), "leakage", "compute"]
    colors = dict(zip(keys, ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "0.5"]))
    fig, ax = _figure()
    bottom = np.zeros(len(labels))
    for key in keys:
        vals = np.array([data[n].get(key, 0.0) for n in labels])
        if not vals.any():
            continue
        ax.bar(labels, vals, bottom=bottom, label=key, color=colors.get(key))
        bottom += vals
    for x, v in enumerate(bottom):
        ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8)
    ax.margins(y=0.1)
    total = float(ds.energy.values[i]) / float(ds.computes.values[i])
    ax.set_ylabel("energy (pJ / MAC)")
    ax.set_title(f"{ds.attrs.get('workload', '')} mapping {i}: {total:.3g} pJ/MAC, "
                 f"{float(ds.cycles.values[i]):.4g} cycles")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=30)
    return fig


def _network_breakdown(ds):
    names = [str(x) for x in ds.layer.values]
    choice = ds.choice.values
    reps = ds.repeats.values
    levels = [str(x) for x in ds.level.values]
    fig, ax = _figure((max(7.0, 0.35 * len(names) + 2), 4.2))
    bottom = np.zeros(len(names))
    ok = choice >= 0
    pick = np.where(ok, choice, 0)
    rows = np.arange(len(names))
    per_level = ds.level_energy.values[rows, pick] * reps[:, None] * 1e-6  # [layer, level] uJ
    comp = ds.compute_energy.values[rows, pick] * reps * 1e-6
    for l, name in enumerate([*levels, ds.attrs.get("compute_level", "MAC")]):
        vals = np.where(ok, per_level[:, l] if l < len(levels) else comp, 0.0)
        ax.bar(names, vals, bottom=bottom, label=name)
        bottom += vals
    ax.set_ylabel("energy (uJ, x repeats)")
    title = "per-layer energy of the chosen mappings"
    if "total_energy" in ds and np.isfinite(float(ds.total_energy)):
        title += f"; network total {float(ds.total_energy) * 1e-6:.4g} uJ"
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    return fig


PLOTS = {"spread": spread, "pareto": pareto, "breakdown": breakdown}
