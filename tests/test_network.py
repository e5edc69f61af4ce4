"""`jaxloop map` on a network file: every layer mapped as a single-layer run would map it, one
results file with a `layer` dimension and network totals, JSON and per-layer mappings, resume
after an interrupted layer, constraints on absent dimensions dropped, clear errors for bad files."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from conftest import TIMELOOP_REF

from jaxloop.cli import main
from jaxloop.results import layer_dataset, read_dataset

TL05 = TIMELOOP_REF / "tl05-mapper-conv1d+oc-3level-freebypass"
CONV1D_OC = """problem:
  version: 0.4
  shape:
    name: Conv1D_OC
    dimensions: [K, R, P]
    data_spaces:
    - {{name: Weights, projection: [[[K]], [[R]]]}}
    - {{name: Inputs, projection: [[[R], [P]]]}}
    - {{name: Outputs, projection: [[[K]], [[P]]], read_write: True}}
  instance: {{K: {K}, R: 3, P: {P}}}
"""
CONV1D = """problem:
  version: 0.4
  shape:
    name: Conv1D
    dimensions: [R, P]
    data_spaces:
    - {name: Weights, projection: [[[R]]]}
    - {name: Inputs, projection: [[[R], [P]]]}
    - {name: Outputs, projection: [[[P]]], read_write: True}
  instance: {R: 3, P: 16}
"""
# K and P free between the two outer levels (a few thousand mappings per layer, all bypass choices)
CONS = """mapspace_constraints:
  targets:
  - {{target: MainMemory, type: temporal, factors: R=1{k}, permutation: PR{K}}}
  - {{target: GlobalBuffer, type: temporal, factors: R=1, permutation: PR{K}}}
  - {{target: RegisterFile, type: temporal, factors: R=0 P=1, permutation: RP{K}}}
"""
LAYERS = [("a", "l1.yaml", 1), ("b", "l2.yaml", 2), ("c", "l3.yaml", 1)]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    shutil.copy(TL05 / "mapper-src/arch/3level.arch.yaml", d / "arch.yaml")
    (d / "cons.yaml").write_text(CONS.format(k="", K="K"))
    (d / "cons_noK.yaml").write_text(CONS.format(k="", K=""))
    (d / "l1.yaml").write_text(CONV1D_OC.format(K=32, P=16))
    (d / "l2.yaml").write_text(CONV1D_OC.format(K=16, P=8))
    (d / "l3.yaml").write_text(CONV1D)  # no K: the constraints' K entries are dropped for it
    (d / "net.yaml").write_text("network: tiny\nlayers:\n" + "".join(
        f"  - {{name: {n}, file: {f}, repeats: {r}}}\n" for n, f, r in LAYERS))
    return d


def _args(d, *files, out=None):
    args = ["map", str(d / "arch.yaml"), *map(str, files), "--ert", str(TL05 / "ERT.yaml"), "--search", "exhaustive",
            "--objective", "energy", "--top", "3", "--no-progress"]
    return args + (["--out", str(out)] if out else [])


@pytest.fixture(scope="module")
def network_run(net):
    """The network mapped once for the module: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([*_args(net, net / "net.yaml", net / "cons.yaml", out=net / "r.h5"), "--json", str(net / "r.json"),
                   "--map-out", str(net / "best.yaml")])
    return rc, out.getvalue(), err.getvalue()


def test_network_results_file_and_totals(net, network_run):
    rc, out, err = network_run
    assert rc == 0, err
    assert "layer 2/3 b: mapspace 3,840 mappings, search exhaustive" in out
    table = out[out.index("network tiny (each layer"):].splitlines()
    assert [r.split()[:2] for r in table[3:6]] == [["a", "1"], ["b", "2"], ["c", "1"]] and table[7].startswith("total")
    assert err.count("dropped the parts naming K") == 3  # one warning per constraint
    ds = read_dataset(net / "r.h5")
    assert list(ds.layer.values) == ["a", "b", "c"] and list(ds.repeats.values) == [1, 2, 1]
    assert list(ds.dim.values) == ["K", "R", "P"] and list(ds.bound.sel(layer="c").values) == [0, 3, 16]
    chosen = np.array([float(ds.energy.sel(layer=n).values[c]) for n, c in zip(ds.layer.values, ds.choice.values)])
    assert float(ds.total_energy) == pytest.approx((chosen * ds.repeats.values).sum(), rel=1e-12)
    cyc = np.array([float(ds.cycles.sel(layer=n).values[c]) for n, c in zip(ds.layer.values, ds.choice.values)])
    assert float(ds.total_cycles) == pytest.approx((cyc * ds.repeats.values).sum())
    assert list(ds.search_evaluated.values) == [6720, 3840, 320]
    assert layer_dataset(ds, "c").sizes["dim"] == 2
    assert not list(net.glob("*.part.h5")) and not list(net.glob("*.ckpt"))
    js = json.loads((net / "r.json").read_text())
    assert set(js) >= {"network", "layers", "total"} and js["network"] == "tiny"
    assert list(js["layers"]) == ["a", "b", "c"] and set(js["total"]) == {"energy_pJ", "cycles", "computes"}
    assert js["total"]["energy_pJ"] == pytest.approx(float(ds.total_energy))
    assert js["total"]["computes"] == 32 * 3 * 16 + 2 * 16 * 3 * 8 + 3 * 16
    for n, c in zip(ds.layer.values, ds.choice.values):
        assert js["layers"][n]["energy_pJ"] == pytest.approx(float(ds.energy.sel(layer=n).values[c]), rel=1e-9)
        assert (net / f"best.{n}.yaml").exists()


@pytest.mark.parametrize("layer,problem,cons", [("a", "l1.yaml", "cons.yaml"), ("b", "l2.yaml", "cons.yaml"),
                                                ("c", "l3.yaml", "cons_noK.yaml")])
def test_each_layer_as_a_single_layer_run(net, network_run, layer, problem, cons, tmp_path, capsys):
    """Each layer's chosen mapping is the best a single-layer run finds (layer c without K: the
    single run gets constraints without K, which is what dropping them means)."""
    assert main([*_args(net, net / problem, net / cons), "--json", str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    js = json.loads((net / "r.json").read_text())
    assert js["layers"][layer] == one


def test_single_layer_keeps_timeloops_error_on_absent_dimensions(net, capsys):
    assert main([*_args(net, net / "l3.yaml", net / "cons.yaml"), "--size"]) == 2
    assert "'K' is not a dimension" in capsys.readouterr().err


def test_interrupted_network_resumes_finished_layers(net, network_run, tmp_path, monkeypatch, capsys):
    import jaxloop.commands.map as cmd

    real, calls = cmd.run_search, []

    def stop_in_second_layer(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cmd, "run_search", stop_in_second_layer)
    args = _args(net, net / "net.yaml", net / "cons.yaml", out=tmp_path / "r.h5")
    assert main(args) == 130
    assert (tmp_path / "r.h5.a.part.h5").exists() and not (tmp_path / "r.h5").exists()
    monkeypatch.setattr(cmd, "run_search", real)
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "layer 1/3 a: done in an earlier run" in out and "layer 2/3 b: mapspace" in out
    assert not list(tmp_path.glob("*.part.h5"))
    a, b = read_dataset(tmp_path / "r.h5"), read_dataset(net / "r.h5")
    assert float(a.total_energy) == float(b.total_energy) and (a.choice.values == b.choice.values).all()


@pytest.mark.parametrize("entry,key", [("{name: x, repeats: 1}", "layers[1]: missing 'file'"),
                                       ("{name: x, file: nowhere.yaml}", "layers[1].file: nowhere.yaml not found"),
                                       ("{name: a, file: l2.yaml}", "layers[1].name: layer name 'a' used twice"),
                                       ("{file: l2.yaml, repeats: 0}", "layers[1].repeats: expected a positive")])
def test_bad_network_file_is_a_clear_error(net, tmp_path, capsys, entry, key):
    bad = net / f"bad_{abs(hash(entry))}.yaml"
    bad.write_text(f"network: bad\nlayers:\n  - {{name: a, file: l1.yaml}}\n  - {entry}\n")
    assert main(_args(net, bad, net / "cons.yaml")) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and key in err, err
