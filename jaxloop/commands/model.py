"""`jaxloop model FILE.yaml... [--ert ERT.yaml] [--json OUT.json]`: Timeloop's timeloop-model."""

import json
from pathlib import Path

from jaxloop.energy.tables import tables_for
from jaxloop.compiler import compile_spec
from jaxloop.model.energy import area
from jaxloop.model.evaluate import evaluate_one
from jaxloop.report import stats_json, summary_text
from jaxloop.spec import load_spec


def add_parser(subparsers):
    p = subparsers.add_parser("model", help="evaluate the mapping given in the input files",
                              description="Evaluate one mapping (Timeloop's timeloop-model).")
    p.add_argument("files", nargs="+", metavar="FILE.yaml",
                   help="Timeloop input files (architecture, problem, mapping), merged in order")
    p.add_argument("--ert", metavar="ERT.yaml", help="Accelergy energy reference table (else estimated)")
    p.add_argument("--art", metavar="ART.yaml", help="Accelergy area reference table")
    p.add_argument("--json", metavar="OUT.json", help="write the statistics as JSON")
    p.set_defaults(func=run)


def run(args):
    spec = load_spec(*args.files)
    table = tables_for(spec, args.ert, args.art)
    static, stats = evaluate_one(spec, table)
    print(summary_text(spec, static, stats, keep=spec.mapping.keep))
    print(f"Area: {area(compile_spec(spec, table)[1]) / 1e6:.4f} mm^2 (per-instance area x instances)")
    if args.json:
        out = stats_json(spec, static, stats, keep=spec.mapping.keep)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if int(stats.status[0]) == 0 else 1
