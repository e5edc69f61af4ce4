"""`jaxloop info FILE.yaml...`: what jaxloop read: levels, fan-outs, sizes, dataspaces, devices."""

import jax

from jaxloop.spec import load_spec


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="show the parsed architecture and workload")
    p.add_argument("files", nargs="+", metavar="FILE.yaml")
    p.set_defaults(func=run)


def run(args):
    spec = load_spec(*args.files, need_mapping=False)
    wl, arch = spec.workload, spec.arch
    print(f"workload {wl.name}: " + " ".join(f"{d}={b}" for d, b in zip(wl.dims, wl.bounds)) + f"  ({wl.macs:,} MACs)")
    for t, ds in enumerate(wl.dataspaces):
        print(f"  {ds.name:10s} {'read-write' if ds.read_write else 'read-only':10s} size {wl.tensor_size(t):,}"
              + ("  sliding" if ds.sliding else ""))
    print("architecture (outermost first):")
    for i in reversed(range(len(arch.levels))):
        lv = arch.levels[i]
        fx, fy = arch.fanout(i)
        size = "unbounded" if lv.size == float("inf") else f"{int(lv.size):,} words"
        print(f"  {lv.name:28s} {lv.cls:18s} x{lv.instances:<5d} {size:>16s} block {lv.block_size}"
              + (f"  fanout {fx}x{fy}" if fx * fy > 1 else ""))
    c = arch.compute
    print(f"  {c.name:28s} {c.cls:18s} x{c.instances}")
    print(f"mapping: {'given' if spec.mapping is not None else 'none'}; devices: {jax.devices()}")
    return 0
