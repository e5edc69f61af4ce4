"""`jaxloop energy FILE.yaml... [--out ERT.yaml] [--area ART.yaml]`: ERT/ART from an architecture.

`add_parser(subparsers)` registers the subcommand; its handler returns an exit code.
"""

import sys


def add_parser(subparsers):
    """Register `energy` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "energy",
        help="estimate per-action energies (ERT) and areas (ART) from component attributes",
        description="Estimate an Accelergy-style energy reference table (pJ per action) and area "
        "reference table (um^2 per instance) for every architecture component, using hwcomponents "
        "and its plug-ins. Files are merged section by section, later files winning.",
    )
    p.add_argument("files", nargs="+", metavar="FILE.yaml", help="architecture (+ compound components) YAML")
    p.add_argument("--out", metavar="ERT.yaml", help="write the energy reference table here")
    p.add_argument("--area", metavar="ART.yaml", help="write the area reference table here")
    p.set_defaults(func=handler)
    return p


def format_table(table):
    """The table as aligned text: component, action, energy, area, source."""
    rows = [("component", "action", "energy (pJ)", "area (um^2)", "source")]
    for comp, actions in table.energy.items():
        for i, (action, energy) in enumerate(actions.items()):
            first = i == 0
            rows.append((
                comp if first else "",
                action,
                f"{energy:.6g}",
                f"{table.area.get(comp, 0.0):.6g}" if first else "",
                table.source.get(comp, "") if first else "",
            ))
    widths = [max(len(r[k]) for r in rows) for k in range(4)]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3].rjust(widths[3]), r[4]]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def handler(args):
    """Run `jaxloop energy`; 0 on success, 2 on a spec error."""
    from jaxloop.energy.estimate import estimate_tables, write_art, write_ert
    from jaxloop.errors import SpecError
    from jaxloop.spec.yamlio import merge_files, plain

    try:
        doc, _ = merge_files(args.files)
        table = estimate_tables(plain(doc))
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(table))
    if args.out:
        write_ert(table, args.out)
        print(f"wrote {args.out}")
    if args.area:
        write_art(table, args.area)
        print(f"wrote {args.area}")
    return 0


def main(argv=None):
    """Stand-alone entry point: `python -m jaxloop.energy.cli FILE.yaml ...`."""
    import argparse

    parser = argparse.ArgumentParser(prog="jaxloop")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["energy", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
