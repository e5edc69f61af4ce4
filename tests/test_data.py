"""The shipped data: every architecture and workload loads; workloads are what generate.py writes;
architecture constraints agree with the mappings Timeloop's mapper chose for the same designs."""

import re
import runpy
from math import prod
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

import jaxloop
from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import load_tables
from jaxloop.model.evaluate import evaluate_one
from jaxloop.spec import Mapping

DATA = Path(__file__).resolve().parents[1] / "data"
ARCHS = sorted(p for p in (DATA / "arch").glob("*.yaml") if not p.name.endswith(("ERT.yaml", "ART.yaml")))
NETWORKS = sorted(p.parent for p in (DATA / "workloads").glob("*/network.yaml"))
from conftest import TIMELOOP_REF as REF  # noqa: E402
CNN = DATA / "workloads" / "vgg16" / "conv3_2.yaml"
# MACs per inference (batch 1), from the networks' papers / torchvision's model summaries.
MACS = {"alexnet": 714_188_480, "vgg16": 15_470_264_320, "resnet50": 4_089_184_256,
        "mobilenet_v2": 300_774_272, "bert_base": 12 * (4 * 512 * 768 * 768 + 2 * 512 * 512 * 768
                                                        + 2 * 512 * 768 * 3072)}
_yaml = YAML(typ="safe")


TIMELOOP_ARCHS = {"eyeriss_like", "simba_like", "simple_weight_stationary", "simple_output_stationary", "nvdla_like"}


def test_shipped_files():
    assert TIMELOOP_ARCHS <= {p.stem for p in ARCHS}
    assert {p.name for p in NETWORKS} == set(MACS)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda p: p.stem)
def test_arch_loads_with_a_layer(arch):
    spec = jaxloop.load_spec(arch, CNN, need_mapping=False)
    assert spec.mapping is None and spec.arch.levels
    if arch.stem not in TIMELOOP_ARCHS:
        return
    doc = _yaml.load(arch.read_text())
    assert doc["architecture"]["version"] == "0.4" and "compound_components" in doc
    names = set(spec.arch.names)
    for i, c in enumerate(doc["architecture_constraints"]["targets"]):
        assert c["target"] in names, (i, c)
        assert c["type"] in ("temporal", "spatial", "bypass", "utilization"), (i, c)


def test_workloads_are_generated(tmp_path):
    runpy.run_path(str(DATA / "workloads" / "generate.py"))["generate"](tmp_path)
    made = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.yaml")}
    shipped = {p.relative_to(DATA / "workloads"): p.read_text() for p in (DATA / "workloads").rglob("*.yaml")}
    assert made == shipped


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    """A two-component architecture (DRAM + MAC): loading a workload with it is quick."""
    path = tmp_path_factory.mktemp("arch") / "tiny.yaml"
    path.write_text("architecture:\n  version: '0.4'\n  subtree:\n  - name: sys\n    local:\n"
                    "    - {name: DRAM, class: DRAM, attributes: {datawidth: 8}}\n"
                    "    - {name: MAC, class: intmac}\n")
    return path


@pytest.mark.parametrize("net", NETWORKS, ids=lambda p: p.name)
def test_every_layer_loads(net, tiny_arch):
    arch = tiny_arch
    listing = _yaml.load((net / "network.yaml").read_text())
    assert listing["network"] == net.name
    files = {x["file"] for x in listing["layers"]}
    assert files == {p.name for p in net.glob("*.yaml")} - {"network.yaml"}
    total = 0
    for layer in listing["layers"]:
        assert layer["repeats"] >= 1
        wl = jaxloop.load_spec(arch, net / layer["file"], need_mapping=False).workload
        total += wl.macs * layer["repeats"]
        names = [d.name for d in wl.dataspaces]
        assert names == ["Weights", "Inputs", "Outputs"] and wl.dataspaces[2].read_write
        if wl.name == "Depthwise_Layer":  # every channel is its own output: no reduction across C
            assert "M" not in wl.dims and wl.dataspaces[2].relevant(wl.dims.index("C"))
    assert total == MACS[net.name]


def test_nvdla_like_maps_a_vgg_layer():
    """A mapping inside the sample's constraints (C64 on Y below the accumulation buffers, M16 on X
    below the weight/input buffer) is valid and uses the shipped energy table."""
    spec = jaxloop.load_spec(DATA / "arch" / "nvdla_like.yaml", CNN, need_mapping=False)
    assert spec.arch.names == ("Registers", "AccumulationBuffer", "WeightInputBuffer", "DRAM")
    assert [spec.arch.fanout(i) for i in range(4)] == [(1, 1), (1, 64), (16, 1), (1, 1)]
    assert spec.arch.levels[2].size == 256 * 1024 and spec.arch.levels[2].block_size == 64
    assert spec.arch.levels[1].size == 128 and spec.arch.levels[0].size == 1
    table = load_tables(DATA / "arch" / "nvdla_like.ERT.yaml", DATA / "arch" / "nvdla_like.ART.yaml")
    compile_spec(spec, table)  # every component has energies
    dims = list(spec.workload.dims)
    f = {k: np.ones((4, 7), np.int64) for k in ("t", "x", "y")}
    for key, lv, fac in (("t", 0, {"P": 8, "Q": 8}), ("t", 1, {"M": 2}), ("y", 1, {"C": 64}), ("x", 2, {"M": 16}),
                         ("t", 2, {"C": 4, "R": 3, "S": 3}), ("t", 3, {"M": 8, "P": 7, "Q": 7})):
        for d, v in fac.items():
            f[key][lv, dims.index(d)] = v
    keep = np.array([[1, 0, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]], bool)
    m = Mapping(f["t"], f["x"], f["y"], np.tile(np.arange(7), (4, 1)), keep)
    static, stats = evaluate_one(spec, table, m)
    assert int(stats.status[0]) == 0
    assert float(stats.computes[0]) == spec.workload.macs


# ---------------------------------------------------------------- constraints vs Timeloop's mapper

def _factors(text, dims):
    return {m[1]: int(m[2]) for m in re.finditer(r"([A-Za-z]+)\s*=\s*(\d+)", text) if m[1] in dims}


def _violations(constraints, spec):
    """Every constraint the spec's mapping breaks: fixed factors, keep/bypass, the order of the
    non-trivial loops, and the X/Y split. Timeloop's mapper orders a spatial level's loops as
    unit-factor dimensions first, then the constraint's permutation, then the rest, and sends
    the first `split` of them along X (mapspaces/subspaces.cpp, PermutationSpace::InitLevel)."""
    m, dims, ds = spec.mapping, list(spec.workload.dims), [d.name for d in spec.workload.dataspaces]
    bad = []
    for c in constraints:
        lv = spec.arch.names.index(c["target"])
        if c["type"] == "bypass":
            for key, want in (("keep", True), ("bypass", False)):
                bad += [(c["target"], key, n) for n in c.get(key, []) if m.keep[lv, ds.index(n)] != want]
        elif c["type"] in ("temporal", "spatial"):
            arr = m.temporal if c["type"] == "temporal" else m.spatial
            bad += [(c["target"], c["type"], d) for d, v in _factors(c.get("factors", ""), dims).items()
                    if arr[lv, dims.index(d)] != v]
            order = list(c.get("permutation", ""))
            if c["type"] == "temporal" and order:
                used = [dims[d] for d in m.perm[lv] if m.temporal[lv, d] > 1]
                head = [d for d in order if d in used]
                if used[:len(head)] != head:
                    bad.append((c["target"], "permutation", used))
            if c["type"] == "spatial" and "split" in c:
                unit = [d for d in dims if arr[lv, dims.index(d)] == 1]
                full = unit + [d for d in order if d not in unit] + [d for d in dims if d not in unit + order]
                on_x = full[:c["split"]]
                for d, name in enumerate(dims):
                    if (m.spatial_y if name in on_x else m.spatial_x)[lv, d] > 1:
                        bad.append((c["target"], "split", name))
    return bad


@pytest.mark.parametrize("name", ["eyeriss_like", "simba_like", "simple_weight_stationary",
                                  "simple_output_stationary"])
def test_constraints_admit_the_mappers_choice(name):
    case = REF / f"ed-{name}"
    assert case.is_dir(), f"reference case not found: {case}"
    spec = jaxloop.load_spec(case / "input.yaml")
    doc = _yaml.load((DATA / "arch" / f"{name}.yaml").read_text())
    assert doc["architecture"] == _yaml.load((case / "input.yaml").read_text())["architecture"]
    constraints = doc["architecture_constraints"]["targets"]
    assert _violations(constraints, spec) == []
    # and the checker does catch a violation
    spec.mapping.keep[:] = ~spec.mapping.keep
    assert _violations(constraints, spec)
    assert prod(spec.workload.bounds) == spec.workload.macs
