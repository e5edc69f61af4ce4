"""The kernel against Timeloop's own output on every dense reference case, and its CLI."""

import json

import numpy as np
import pytest
from conftest import TIMELOOP_REF, dense_cases

import jaxloop
from jaxloop.cli import main
from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import load_tables
from jaxloop.mapspace import MappingBatch
from jaxloop.model.evaluate import evaluate, evaluate_one
from jaxloop.timeloop_stats import parse_stats

COUNTS = {"reads": "Scalar reads (per-instance)", "fills": "Scalar fills (per-instance)",
          "updates": "Scalar updates (per-instance)", "tile": "Utilized capacity", "partition": "Partition size"}


def _case(case):
    d = TIMELOOP_REF / case
    spec = jaxloop.load_spec(d / "input.yaml")
    static, stats = evaluate_one(spec, load_tables(d / "ERT.yaml", d / "ART.yaml"))
    return spec, static, stats, parse_stats(d / "timeloop-model.stats.txt")


def close(ours, theirs):
    """Timeloop prints energies rounded to 0.01 pJ: equal within 0.1 % or that rounding."""
    return abs(ours - theirs) <= max(1e-3 * abs(theirs), 0.011)


@pytest.mark.parametrize("case", dense_cases())
def test_matches_timeloop(case):
    spec, static, st, ref = _case(case)
    bad = []
    for l, lv in enumerate(spec.arch.levels):
        for t, ds in enumerate(spec.workload.dataspaces):
            r = ref.get(lv.name, {}).get(ds.name)
            for key, field in COUNTS.items():
                ours = float(getattr(st, key)[0, l, t]) if spec.mapping.keep[l, t] else 0.0
                want = r[field] if r else 0.0
                if ours != want:
                    bad.append((lv.name, ds.name, key, ours, want))
            if r:
                if float(st.instances[0, l]) != r["Utilized instances (max)"]:
                    bad.append((lv.name, ds.name, "instances", float(st.instances[0, l]), r["Utilized instances (max)"]))
                if not close(float(st.energy_ds[0, l, t]), r["Energy (total)"]):
                    bad.append((lv.name, ds.name, "energy", float(st.energy_ds[0, l, t]), r["Energy (total)"]))
    summary = ref["summary"]
    fj = summary["fJ/Compute"]
    for l, lv in enumerate(spec.arch.levels):
        ours = float(st.level_energy[0, l]) / float(st.computes[0]) * 1e3
        if lv.name in fj and not close(ours, fj[lv.name]):
            bad.append((lv.name, "fJ/Compute", ours, fj[lv.name]))
    assert bad == []
    assert int(st.cycles[0]) == summary["Cycles"]
    assert float(st.computes[0]) == summary["Computes"]
    assert close(float(st.energy[0]) / float(st.computes[0]) * 1e3, fj["Total"])
    assert int(st.status[0]) == 0


def test_batch_equals_single():
    """The scalar path is the batch path with B = 1: rows of a mixed batch equal lone runs."""
    a = jaxloop.load_spec(TIMELOOP_REF / "tl03-conv1d+oc-3level-bypass" / "input.yaml")
    b = jaxloop.load_spec(TIMELOOP_REF / "tl03-conv1d+oc-3level-nobypass" / "input.yaml")
    static, arr = compile_spec(a, load_tables(TIMELOOP_REF / "tl03-conv1d+oc-3level-bypass" / "ERT.yaml"))
    maps = [a.mapping, b.mapping, a.mapping]
    both = evaluate(static, arr, MappingBatch.from_mappings(maps))
    for i, m in enumerate(maps):
        one = evaluate(static, arr, MappingBatch.from_mappings([m]))
        for f in ("reads", "fills", "updates", "energy", "cycles", "status"):
            np.testing.assert_array_equal(np.asarray(getattr(both, f))[i], np.asarray(getattr(one, f))[0])


def test_cli_json(tmp_path, capsys):
    d = TIMELOOP_REF / "tl04-conv1d+oc-3levelspatial-kp"
    out = tmp_path / "s.json"
    assert main(["model", str(d / "input.yaml"), "--ert", str(d / "ERT.yaml"), "--json", str(out)]) == 0
    js = json.loads(out.read_text())
    assert set(js) == {"energy_pJ", "cycles", "computes", "utilization", "pj_per_compute", "levels", "status"}
    ref = parse_stats(d / "timeloop-model.stats.txt")
    assert js["cycles"] == ref["summary"]["Cycles"] and js["status"] == []
    assert js["levels"]["GlobalBuffer"]["Inputs"]["reads"] == ref["GlobalBuffer"]["Inputs"]["Scalar reads (per-instance)"]
    assert js["levels"]["GlobalBuffer"]["Weights"]["utilized_instances"] == 16
    assert close(js["pj_per_compute"]["Total"] * 1e3, ref["summary"]["fJ/Compute"]["Total"])
    assert "Summary Stats" in capsys.readouterr().out
