"""jaxloop.results: the written schema, HDF5 round trip, atomic writes, mapping round trip, networks."""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from ruamel.yaml import YAML

from jaxloop import load_spec
from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import load_tables
from jaxloop.mapspace import MappingBatch
from jaxloop.model.evaluate import evaluate
from jaxloop.model.status import FLAG_MASKS
from jaxloop.results import (ABSENT, SCHEMA, concat_layers, dataset_to_batch, layer_dataset, read_dataset,
                             to_dataset, write_dataset)
from jaxloop.spec import DataSpace, Workload

from conftest import TIMELOOP_REF as REF  # noqa: E402
CASE = REF / "tl03-conv1d+oc-3level-bypass"


def _all_at_top(spec, n):
    """n copies of 'every factor at the outermost level, keep everything', loop orders rotated."""
    L, D, T = len(spec.arch.levels), len(spec.workload.dims), len(spec.workload.dataspaces)
    temporal = np.ones((n, L, D), np.int64)
    temporal[:, -1] = spec.workload.bounds
    perm = np.stack([np.tile(np.roll(np.arange(D), i), (L, 1)) for i in range(n)])
    return MappingBatch(temporal, np.ones_like(temporal), np.ones_like(temporal), perm, np.ones((n, L, T), bool))


@pytest.fixture(scope="module")
def case():
    spec = load_spec(CASE / "input.yaml")
    table = load_tables(CASE / "ERT.yaml", CASE / "ART.yaml")
    static, arr = compile_spec(spec, table)
    own = MappingBatch.from_mappings([spec.mapping])
    top = _all_at_top(spec, 3)
    batch = MappingBatch(*(np.concatenate([a, b]) for a, b in zip(own, top)))
    batch.temporal[-1, 0, 0] = 5  # factors no longer multiply to the bound: invalid
    stats = evaluate(static, arr, batch)
    return spec, table, static, stats, batch


@pytest.fixture(scope="module")
def ds(case):
    spec, table, static, stats, batch = case
    return to_dataset(spec, static, stats, batch, attrs={"run": "test", "opts": {"a": 1}}, table=table,
                      index=[7, 8, 9, 10])


def test_schema(case, ds):
    spec, table, static, stats, batch = case
    assert dict(ds.sizes) == {"mapping": 4, "level": 3, "dataspace": 3, "dim": 3, "action": 3, "loop": 3}
    assert list(ds.level.values) == ["RegisterFile", "GlobalBuffer", "MainMemory"]
    assert list(ds.action.values) == ["read", "fill", "update"]
    assert list(ds.dim.values) == list(spec.workload.dims) and list(ds.bound.values) == list(spec.workload.bounds)
    for v, units in {"energy": "pJ", "cycles": "cycle", "edp": "J*cycle", "utilization": "1", "computes": "MAC",
                     "counts": "word", "instances": "1", "level_energy": "pJ"}.items():
        assert ds[v].attrs["units"] == units, v
    assert ds.counts.dims == ("mapping", "level", "dataspace", "action")
    np.testing.assert_array_equal(ds.counts.sel(action="read"), np.asarray(stats.reads))
    np.testing.assert_array_equal(ds.counts.sel(action="update"), np.asarray(stats.updates))
    np.testing.assert_allclose(ds.level_energy, np.asarray(stats.level_energy))
    np.testing.assert_allclose(ds.edp, np.asarray(stats.edp))
    np.testing.assert_allclose(ds.last_level_accesses, np.asarray(stats.last_level_accesses))
    assert ds.status.dtype == np.uint32 and list(ds.status.values[[0, 3]]) == [0, 8]
    assert list(ds.status.attrs["flag_masks"][:-1]) == list(FLAG_MASKS)
    assert ds.status.attrs["flag_meanings"].split()[3] == "factors"
    assert ds.attrs["schema"] == SCHEMA and ds.attrs["jax_version"] and ds.attrs["jaxloop_version"]
    assert YAML(typ="safe").load(ds.attrs["spec"]) == spec.doc
    assert YAML(typ="safe").load(ds.attrs["energy_table"])["MACC"]["compute"] == 0.845
    assert "ERT file" in ds.attrs["energy_table_source"]
    assert ds.attrs["run"] == "test" and YAML(typ="safe").load(ds.attrs["opts"]) == {"a": 1}
    assert list(ds.mapspace_index.values) == [7, 8, 9, 10]


def test_hdf5_round_trip_and_mapping_round_trip(case, ds, tmp_path):
    spec, table, static, stats, batch = case
    path = write_dataset(ds, tmp_path / "sub" / "r.h5")
    back = read_dataset(path)
    xr.testing.assert_equal(back, ds)
    assert back.status.dtype == np.uint32 and back.keep.dtype == bool
    assert back.attrs["spec"] == ds.attrs["spec"]
    again = dataset_to_batch(back)
    for name, a, b in zip(MappingBatch._fields, batch, again):
        np.testing.assert_array_equal(np.asarray(a), b, err_msg=name)
    m = again.mapping(0)
    for f in ("temporal", "spatial_x", "spatial_y", "perm", "keep"):
        np.testing.assert_array_equal(getattr(m, f), getattr(spec.mapping, f), err_msg=f)
    assert os.listdir(path.parent) == ["r.h5"]  # no temp file left behind


def test_interrupted_write_keeps_the_old_file(ds, tmp_path, monkeypatch):
    path = write_dataset(ds, tmp_path / "r.h5")
    before = path.read_bytes()

    def broken(self, target, *args, **kwargs):
        Path(target).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(ds.isel(mapping=[0]), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.h5"]


def test_network_layers_with_different_dimensions(case, ds, tmp_path):
    spec, table, static, stats, batch = case
    # A second layer without K (1-D convolution), on the same architecture.
    wl = Workload("Conv1D", ("R", "P"), (3, 8), (DataSpace("Weights", (((0, 1),),)),
                                                   DataSpace("Inputs", (((0, 1), (1, 1)),)),
                                                   DataSpace("Outputs", (((1, 1),),), read_write=True)))
    spec2 = replace(spec, workload=wl, mapping=None, doc={"problem": {"name": "conv1d"}})
    static2, arr2 = compile_spec(spec2, table)
    batch2 = _all_at_top(spec2, 2)
    ds2 = to_dataset(spec2, static2, evaluate(static2, arr2, batch2), batch2, table=table)
    net = concat_layers([ds, ds2], ["conv1d_oc", "conv1d"], repeats=[2, 3])
    assert dict(net.sizes)["layer"] == 2 and list(net.dim.values) == ["K", "R", "P"]
    assert list(net.bound.sel(layer="conv1d").values) == [0, 3, 8]
    assert (net.status.sel(layer="conv1d").values[2:] & ABSENT).all()
    best = [int(np.nanargmin(np.where(d.status == 0, d.energy, np.nan))) for d in (ds, ds2)]
    assert list(net.choice.values) == best
    expect = 2 * float(ds.energy[best[0]]) + 3 * float(ds2.energy[best[1]])
    assert float(net.total_energy) == pytest.approx(expect)
    assert float(net.total_level_energy.sum()) + 2 * float(ds.compute_energy[best[0]]) + 3 * float(
        ds2.compute_energy[best[1]]) == pytest.approx(expect)
    back = read_dataset(write_dataset(net, tmp_path / "net.h5"))
    for name, orig in (("conv1d_oc", ds), ("conv1d", ds2)):
        one = layer_dataset(back, name)
        xr.testing.assert_equal(one, orig)
        for a, b in zip(dataset_to_batch(orig), dataset_to_batch(one)):
            np.testing.assert_array_equal(a, b)
        assert one.attrs["spec"] == orig.attrs["spec"]
    with pytest.raises(ValueError, match="layer"):
        dataset_to_batch(net)


# ------------------------------------------------------------------------------------ plots

def _random_batch(spec, n, seed=0):
    """n random mappings: each bound split into divisors over the levels, random loop orders
    and bypass (the outermost level keeps everything)."""
    rng = np.random.default_rng(seed)
    L, D, T = len(spec.arch.levels), len(spec.workload.dims), len(spec.workload.dataspaces)
    t = np.ones((n, L, D), np.int64)
    for d, b in enumerate(spec.workload.bounds):
        rest = np.full(n, b)
        for lv in range(L - 1):
            for i in range(n):
                t[i, lv, d] = rng.choice([x for x in range(1, rest[i] + 1) if rest[i] % x == 0])
            rest //= t[:, lv, d]
        t[:, L - 1, d] = rest
    perm = np.argsort(rng.random((n, L, D)), axis=-1)
    keep = rng.random((n, L, T)) < 0.7
    keep[:, -1] = True
    return MappingBatch(t, np.ones_like(t), np.ones_like(t), perm, keep)


@pytest.fixture(scope="module")
def many(case, tmp_path_factory):
    spec, table, static, _, _ = case
    batch = _random_batch(spec, 300)
    ds = to_dataset(spec, static, evaluate(static, compile_spec(spec, table)[1], batch), batch, table=table)
    return write_dataset(ds, tmp_path_factory.mktemp("plots") / "many.h5"), ds


def test_pareto_front_and_spread_data(many):
    from jaxloop.plots import pareto_front, spread_data

    e = np.array([5.0, 3.0, 4.0, 1.0, 2.0, 1.0])
    c = np.array([1.0, 2.0, 2.0, 5.0, 3.0, 6.0])
    assert list(pareto_front(e, c)) == [0, 1, 4, 3]
    _, ds = many
    eff, near, min_dram = spread_data(ds)
    ok = ds.status.values == 0
    assert eff.size == ok.sum() and eff[0] == 1.0 and (np.diff(eff) <= 0).all()
    assert near.sum() == (ds.energy.values[ok] <= 1.01 * ds.energy.values[ok].min()).sum()
    assert min_dram.sum() == (ds.last_level_accesses.values[ok] == ds.last_level_accesses.values[ok].min()).sum()


def test_plot_command_writes_pngs(many, tmp_path, capsys):
    import argparse

    from jaxloop.commands import plot

    path, ds = many
    parser = argparse.ArgumentParser()
    plot.add_parser(parser.add_subparsers())
    for kind in ("spread", "pareto", "breakdown"):
        args = parser.parse_args(["plot", kind, str(path), "-o", str(tmp_path / f"{kind}.png")])
        assert args.func(args) == 0
        assert (tmp_path / f"{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    net = concat_layers([ds, ds.isel(mapping=slice(0, 50))], ["a", "b"])
    write_dataset(net, tmp_path / "net.h5")
    for argv, code in ((["breakdown", str(tmp_path / "net.h5")], 0),
                       (["spread", str(tmp_path / "net.h5")], 2),  # which layer?
                       (["spread", str(tmp_path / "net.h5"), "--layer", "b"], 0),
                       (["pareto", str(tmp_path / "missing.h5")], 2)):
        args = parser.parse_args(["plot", *argv])
        assert args.func(args) == code, argv
    assert (tmp_path / "net-breakdown.png").exists()
    assert "choose one (a, b)" in capsys.readouterr().err
