"""Timeloop input conventions: split files merge, mapping YAML round trip, area."""

import numpy as np
import yaml
from conftest import TIMELOOP_REF

import jaxloop
from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import load_tables
from jaxloop.model.energy import area
from jaxloop.model.evaluate import evaluate_one
from jaxloop.spec.mapping import parse_mapping

CASES = ["tl04-conv1d+oc-3levelspatial-cp", "ed-simba_like", "tl06-mapper-convlayer-eyeriss-vgg02l5"]


def test_split_files_merge_like_timeloop(tmp_path):
    d = TIMELOOP_REF / "tl06-mapper-convlayer-eyeriss-vgg02l5"
    doc = yaml.safe_load((d / "input.yaml").read_text())
    files = []
    for i, keys in enumerate((["architecture", "compound_components"], ["problem"], ["mapping"])):
        f = tmp_path / f"part{i}.yaml"
        f.write_text(yaml.safe_dump({k: doc[k] for k in keys}))
        files.append(f)
    whole = jaxloop.load_spec(d / "input.yaml")
    parts = jaxloop.load_spec(*files)
    table = load_tables(d / "ERT.yaml")
    a, b = evaluate_one(whole, table)[1], evaluate_one(parts, table)[1]
    assert float(a.energy[0]) == float(b.energy[0]) and float(a.cycles[0]) == float(b.cycles[0])


def test_mapping_yaml_round_trip():
    for case in CASES:
        spec = jaxloop.load_spec(TIMELOOP_REF / case / "input.yaml")
        m = spec.mapping
        again = parse_mapping(m.to_yaml_list(spec.arch, spec.workload), spec.arch, spec.workload, lambda *k: "x")
        for f in ("temporal", "spatial_x", "spatial_y", "keep"):
            assert np.array_equal(getattr(m, f), getattr(again, f)), (case, f)
        nontrivial = m.temporal > 1  # loop order matters only among non-unit loops
        for l in range(len(spec.arch.levels)):
            order = [d for d in m.perm[l] if nontrivial[l, d]]
            assert order == [d for d in again.perm[l] if nontrivial[l, d]]


def test_area_is_instances_times_art():
    d = TIMELOOP_REF / "tl06-mapper-convlayer-eyeriss-vgg02l5"
    spec = jaxloop.load_spec(d / "input.yaml")
    _, arr = compile_spec(spec, load_tables(d / "ERT.yaml", d / "ART.yaml"))
    want = 217363.36892 + 168 * (70.091961 + 5816.44278 + 123.627348) + 14 * 1.0 + 1.0 + 168 * 191.82
    assert abs(area(arr) - want) < 1e-6


def _arch_sources():
    out = []
    for case in sorted(p.name for p in TIMELOOP_REF.iterdir()):
        src = TIMELOOP_REF / case / "mapper-src"
        for f in sorted(src.rglob("*.yaml")) if src.is_dir() else []:
            text = f.read_text()
            if "nodes:" in text and "architecture:" in text and "{{" not in text:  # skip Jinja templates
                out.append((case, f))
    return out


def test_v04_nodes_architectures_transpile_like_timeloopfe():
    """Each exercise's `nodes` architecture gives the levels timeloopfe dumped into input.yaml."""
    from jaxloop.spec.yamlio import merge_files
    from jaxloop.spec import spec_from_doc

    key = lambda a: [(lv.name, lv.cls, lv.instances, lv.mesh_x, lv.mesh_y, lv.block_size, lv.size, lv.cluster_size)  # noqa: E731
                     for lv in a.levels] + [(a.compute.name, a.compute.instances)]
    sources = _arch_sources()
    assert len(sources) >= 8
    for case, f in sources:
        dumped = jaxloop.load_spec(TIMELOOP_REF / case / "input.yaml").arch
        doc, src = merge_files([TIMELOOP_REF / case / "input.yaml", f])  # the nodes file replaces the dump
        ours = spec_from_doc(doc, src, need_mapping=False).arch
        assert key(ours) == key(dumped), (case, f.name)
