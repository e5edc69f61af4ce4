"""`jaxloop plot spread|pareto|breakdown RESULTS.h5 -o fig.png`: figures from a results file."""

import sys
from pathlib import Path


def add_parser(subparsers):
    """Register `plot` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "plot",
        help="plot a results file: mapping spread, energy/delay Pareto front, energy breakdown",
        description="spread: every valid mapping's energy efficiency normalized to the best, sorted, with the "
        "optimum, the mappings within 1%% of it and the minimum-DRAM-access set marked. pareto: energy vs "
        "cycles with the Pareto front. breakdown: energy per level (by dataspace) of one mapping, by default "
        "the best valid one; for a network file, per layer.",
    )
    p.add_argument("kind", choices=("spread", "pareto", "breakdown"))
    p.add_argument("results", metavar="RESULTS.h5", help="a file written by jaxloop (docs/results.md)")
    p.add_argument("-o", "--output", metavar="FIG.png",
                   help="image to write (format from the suffix; default RESULTS-KIND.png)")
    p.add_argument("--layer", help="network files: the layer to plot")
    p.add_argument("--mapping", type=int, metavar="I", help="breakdown: row I instead of the best valid mapping")
    p.add_argument("--objective", default="energy", help="breakdown: what 'best' minimizes (default energy)")
    p.add_argument("--dpi", type=int, default=150)
    p.set_defaults(func=run)
    return p


def run(args):
    """Draw and save one figure; 0 on success, 2 when the file or the request is unusable."""
    from jaxloop import plots
    from jaxloop.results import read_dataset

    src = Path(args.results)
    out = Path(args.output) if args.output else src.with_name(f"{src.stem}-{args.kind}.png")
    try:
        ds = read_dataset(src)
    except (OSError, ValueError) as e:
        print(f"jaxloop plot: cannot read {src}: {e}", file=sys.stderr)
        return 2
    try:
        if args.kind == "breakdown":
            fig = plots.breakdown(ds, i=args.mapping, layer=args.layer, objective=args.objective)
        else:
            fig = plots.PLOTS[args.kind](ds, layer=args.layer)
    except (ValueError, KeyError, IndexError) as e:
        print(f"jaxloop plot {args.kind}: {e}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    print(out)
    return 0
