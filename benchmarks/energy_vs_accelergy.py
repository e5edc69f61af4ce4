"""jaxloop's hwcomponents-backed ERT/ART next to the Accelergy ERT/ART of every reference case.

    python benchmarks/energy_vs_accelergy.py [--ref ../shared/reference/timeloop] [CASE...]

For each case folder holding input.yaml + ERT.yaml (+ ART.yaml), estimates the tables from
the input's component attributes and prints, per component and action, ours, Accelergy's
and the ratio. Writes everything to benchmarks/results/energy_vs_accelergy.json.

If `jaxloop.model.evaluate.evaluate_one(spec, table)` exists, it also prints the total
energy of the case's reference mapping under each table.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxloop.energy.ert import load_tables  # noqa: E402
from jaxloop.energy.estimate import estimate_tables  # noqa: E402

DEFAULT_REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "timeloop"


def _ratio(ours, ref):
    if ref == 0:
        return 1.0 if ours == 0 else math.inf
    return ours / ref


def compare_case(folder):
    """{component: {action: {ours, accelergy, ratio}, area: {...}, source}} for one case."""
    doc = yaml.safe_load((folder / "input.yaml").read_text())
    t0 = time.perf_counter()
    ours = estimate_tables(doc)
    seconds = time.perf_counter() - t0
    art = folder / "ART.yaml"
    ref = load_tables(folder / "ERT.yaml", art if art.exists() else None)
    comps = {}
    for comp, ref_actions in ref.energy.items():
        mine = ours.energy.get(comp)
        row = {"source": ours.source.get(comp, "missing"), "actions": {}}
        for action, ref_e in ref_actions.items():
            e = None if mine is None else mine.get(action)
            row["actions"][action] = {
                "ours": e, "accelergy": ref_e, "ratio": None if e is None else _ratio(e, ref_e)}
        if comp in ref.area:
            a = ours.area.get(comp)
            row["area"] = {"ours": a, "accelergy": ref.area[comp],
                           "ratio": None if a is None else _ratio(a, ref.area[comp])}
        comps[comp] = row
    extra = sorted(set(ours.energy) - set(ref.energy))
    return {"components": comps, "only_in_ours": extra, "seconds": seconds}, ours, ref


def total_energies(folder, ours, ref):
    """Total energy of the reference mapping with each table, if the model kernel exists."""
    try:
        from jaxloop.model.evaluate import evaluate_one
    except ImportError:
        return None
    from jaxloop import load_spec

    try:
        spec = load_spec(folder / "input.yaml")
    except Exception as e:  # e.g. a sparse case the dense model does not read
        return {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    out = {}
    for label, table in (("ours", ours), ("accelergy", ref)):
        try:
            _, stats = evaluate_one(spec, table)
        except Exception as e:
            return {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        out[label] = float(stats.energy[0])
    out["ratio"] = _ratio(out["ours"], out["accelergy"])
    return out


def print_case(name, res):
    print(f"\n== {name}  ({res['seconds'] * 1000:.0f} ms)")
    print(f"  {'component':24s} {'action':20s} {'ours':>12s} {'accelergy':>12s} {'ratio':>7s}")
    for comp, row in res["components"].items():
        items = list(row["actions"].items())
        if "area" in row:
            items.append(("(area um^2)", row["area"]))
        for i, (action, v) in enumerate(items):
            ours = "missing" if v["ours"] is None else f"{v['ours']:.5g}"
            ratio = "-" if v["ratio"] is None else f"{v['ratio']:.3f}"
            print(f"  {comp if i == 0 else '':24s} {action:20s} {ours:>12s} {v['accelergy']:12.5g} {ratio:>7s}")
        print(f"  {'':24s} source: {row['source']}")
    t = res.get("total_energy")
    if t and "skipped" in t:
        print(f"  total energy of the reference mapping: skipped ({t['skipped']})")
    elif t:
        print(f"  total energy of the reference mapping: ours {t['ours']:.6g} pJ, "
              f"accelergy {t['accelergy']:.6g} pJ, ratio {t['ratio']:.3f}")


def _kind(source):
    """'hwcomponents:compound smartbuffer_RF [..]' -> 'compound smartbuffer_RF'."""
    head = source.removeprefix("hwcomponents:").split(" [")[0].split(" (")[0]
    return head


def summarize(results):
    """{model kind: {action: [min, median, max] ratio over all cases}} (non-zero references)."""
    acc = {}
    for r in results.values():
        for c in r["components"].values():
            kind = _kind(c["source"])
            items = list(c["actions"].items()) + ([("area", c["area"])] if "area" in c else [])
            for action, v in items:
                if v["ratio"] is not None and v["accelergy"] > 0 and v["ratio"] != math.inf:
                    acc.setdefault(kind, {}).setdefault(action, []).append(v["ratio"])
    out = {}
    for kind, actions in acc.items():
        out[kind] = {}
        for action, xs in actions.items():
            xs = sorted(xs)
            out[kind][action] = [xs[0], xs[len(xs) // 2], xs[-1]]
    return out


def print_summary(by_kind):
    print("\nratio ours/Accelergy by model (min / median / max over all cases, non-zero references):")
    for kind, actions in sorted(by_kind.items()):
        cells = ", ".join(f"{a} {lo:.3g}/{med:.3g}/{hi:.3g}" if lo != hi else f"{a} {med:.3g}"
                          for a, (lo, med, hi) in actions.items())
        print(f"  {kind:32s} {cells}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, default=DEFAULT_REF, help="folder of reference cases")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "energy_vs_accelergy.json")
    ap.add_argument("cases", nargs="*", help="only these case names")
    args = ap.parse_args(argv)

    results = {}
    have_totals = True
    for folder in sorted(p for p in args.ref.iterdir() if (p / "input.yaml").exists() and (p / "ERT.yaml").exists()):
        if args.cases and folder.name not in args.cases:
            continue
        res, ours, ref = compare_case(folder)
        totals = total_energies(folder, ours, ref)
        if totals is None:
            have_totals = False
        else:
            res["total_energy"] = totals
        results[folder.name] = res
        print_case(folder.name, res)

    ratios = [v["ratio"] for r in results.values() for c in r["components"].values()
              for v in c["actions"].values() if v["ratio"] not in (None, math.inf) and v["accelergy"] > 0]
    within = sum(1 for x in ratios if abs(x - 1) <= 0.10)
    positive = [x for x in ratios if x > 0]
    geo = math.exp(sum(math.log(x) for x in positive) / max(1, len(positive)))
    print(f"\n{within}/{len(ratios)} non-zero Accelergy ERT entries within 10% (geometric-mean ratio {geo:.3f})")
    by_kind = summarize(results)
    print_summary(by_kind)
    totals = {k: r["total_energy"]["ratio"] for k, r in results.items()
              if r.get("total_energy") and "ratio" in r["total_energy"]}
    if totals:
        print("\ntotal energy of each reference mapping, jaxloop table / Accelergy table "
              "(same jaxloop dense model for both):")
        for k, x in totals.items():
            print(f"  {k:48s} {x:.3f}")
    if not have_totals:
        print("total energy of the reference mappings: skipped "
              "(jaxloop.model.evaluate.evaluate_one does not exist yet)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"within_10pct": within, "entries": len(ratios), "geomean_ratio": geo,
               "total_energy_compared": have_totals, "total_energy_ratio": totals, "by_model": by_kind}
    args.out.write_text(json.dumps({"summary": summary, "cases": results}, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
