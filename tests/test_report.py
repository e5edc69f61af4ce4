"""jaxloop.report against Timeloop's own stats file for one reference case (tl03, bypass)."""

import json

import numpy as np
import pytest

from jaxloop import load_spec
from jaxloop.energy.ert import load_tables
from jaxloop.model.evaluate import Stats, evaluate_one
from jaxloop.model.status import REASONS
from jaxloop.report import stats_json, summary_text
from jaxloop.timeloop_stats import parse_stats

from conftest import TIMELOOP_REF as REF  # noqa: E402
CASE = REF / "tl03-conv1d+oc-3level-bypass"
KEYS = {"energy_pJ", "cycles", "computes", "utilization", "pj_per_compute", "levels", "status"}
FIELDS = {"reads": "Scalar reads (per-instance)", "fills": "Scalar fills (per-instance)",
          "updates": "Scalar updates (per-instance)", "utilized_instances": "Utilized instances (max)"}


@pytest.fixture(scope="module")
def case():
    spec = load_spec(CASE / "input.yaml")
    table = load_tables(CASE / "ERT.yaml", CASE / "ART.yaml")
    static, stats = evaluate_one(spec, table)
    return spec, static, stats, parse_stats(CASE / "timeloop-model.stats.txt")


def test_stats_json_matches_timeloop(case):
    spec, static, stats, ref = case
    js = stats_json(spec, static, stats)
    assert set(js) == KEYS
    json.dumps(js)  # plain Python values only
    summ = ref["summary"]
    assert js["cycles"] == summ["Cycles"]
    assert js["computes"] == summ["Computes"]
    assert js["utilization"] == pytest.approx(summ["Utilization"] / 100)
    assert js["energy_pJ"] == pytest.approx(summ["Energy"] * 1e6, abs=0.01e6)  # printed in uJ, 2 decimals
    assert js["status"] == []
    assert list(js["pj_per_compute"]) == ["RegisterFile", "GlobalBuffer", "MainMemory", "MACC", "Total"]
    for name, fj in summ["fJ/Compute"].items():
        assert 1000 * js["pj_per_compute"][name] == pytest.approx(fj, abs=0.01), name
    for level, per_ds in js["levels"].items():
        listed = {k for k in ref[level] if k not in ("SPECS", "STATS")}
        assert set(per_ds) == listed, level  # exactly the dataspaces Timeloop lists (the kept ones)
        for ds, d in per_ds.items():
            for key, field in FIELDS.items():
                assert d[key] == ref[level][ds][field], (level, ds, key)
            assert d["energy_pJ"] == pytest.approx(ref[level][ds]["Energy (total)"], abs=0.01)


def test_keep_argument_overrides_inference(case):
    spec, static, stats, _ = case
    inferred = stats_json(spec, static, stats)
    explicit = stats_json(spec, static, stats, keep=spec.mapping.keep)
    assert inferred == explicit


def test_summary_text_reads_back_like_timeloop(case, tmp_path):
    spec, static, stats, ref = case
    text = summary_text(spec, static, stats)
    (tmp_path / "s.txt").write_text(text)
    ours = parse_stats(tmp_path / "s.txt")
    for key in ("Cycles", "Computes", "Utilization"):
        assert ours["summary"][key] == ref["summary"][key]
    assert ours["summary"]["fJ/Compute"] == ref["summary"]["fJ/Compute"]
    for level in static.level_names:
        for ds, fields in ref[level].items():
            if ds in ("SPECS", "STATS"):
                continue
            for field in (*FIELDS.values(), "Utilized capacity", "Partition size"):
                assert ours[level][ds][field] == fields[field], (level, ds, field)
            assert ours[level][ds]["Energy (total)"] == pytest.approx(fields["Energy (total)"], abs=0.011)
    assert ours["MACC"]["STATS"]["Computes (total)"] == ref["MACC"]["STATS"]["Computes (total)"]


def test_invalid_mapping_lists_reasons(case):
    spec, static, stats, _ = case
    bad = Stats(*(np.asarray(x) for x in stats))._replace(status=np.array([0b1001]))
    js = stats_json(spec, static, bad)
    assert js["status"] == [REASONS[0], REASONS[3]]
    assert "Status: invalid" in summary_text(spec, static, bad)
