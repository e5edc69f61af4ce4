"""The `jaxloop` command: thin wrappers over the API. The only place with sys.exit."""

import argparse
import importlib
import sys

from jaxloop import __version__
from jaxloop.errors import SpecError

SUBCOMMANDS = ("jaxloop.commands.model", "jaxloop.commands.map", "jaxloop.energy.cli", "jaxloop.commands.plot", "jaxloop.commands.info")


def build_parser():
    parser = argparse.ArgumentParser(prog="jaxloop", description="Accelerator energy, latency and mapping search "
                                     "(Timeloop-compatible), as a batched JAX kernel.")
    parser.add_argument("--version", action="version", version=f"jaxloop {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SpecError as e:
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: say so plainly, traceback only on request
        if args.debug:
            raise
        print(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
