"""Exact counts past 2**31 MACs, and bad input reported clearly (no traceback)."""

import numpy as np
import pytest
from conftest import TIMELOOP_REF

import jaxloop
from jaxloop.cli import main
from jaxloop.energy.ert import load_tables
from jaxloop.errors import SpecError
from jaxloop.model.evaluate import evaluate_one
from jaxloop.reference import simulate

CASE = TIMELOOP_REF / "tl06-mapper-convlayer-eyeriss-vgg02l5"


def test_vgg16_layer_batch16_exact(tmp_path):
    """VGG-16 conv layer with batch 16: 14.8e9 MACs (> 2**31); every count equals the oracle's
    (Python integers) and the MAC count equals the exact product of the bounds."""
    text = (CASE / "input.yaml").read_text().replace("        N: 1\n", "        N: 16\n")
    text = text.replace("factors: C4 M4 R1 S1 N1 P7 Q4", "factors: C4 M4 R1 S1 N16 P7 Q4")
    (tmp_path / "in.yaml").write_text(text)
    spec = jaxloop.load_spec(tmp_path / "in.yaml")
    macs = 128 * 256 * 3 * 3 * 16 * 56 * 56
    assert spec.workload.macs == macs > 2**31
    static, st = evaluate_one(spec, load_tables(CASE / "ERT.yaml"))
    assert int(st.computes[0]) == macs
    ref = simulate(spec.workload, spec.arch, spec.mapping, link_transfers=False)
    for f in ("reads", "fills", "updates"):
        ours = np.asarray(getattr(st, f))[0]
        want = np.where(spec.mapping.keep, np.array(ref[f], dtype=object), 0)
        assert [[int(x) for x in row] for row in ours] == [[int(x) for x in row] for row in want]
    total_reads = np.asarray(st.reads[0]) * np.asarray(st.instances[0])[:, None]
    assert total_reads.max() > 2**31 and total_reads.max() == int(total_reads.max())  # past int32, still exact


def _write(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def _mutate(tmp_path, old, new):
    text = (TIMELOOP_REF / "tl03-conv1d+oc-3level-bypass" / "input.yaml").read_text()
    assert old in text
    return _write(tmp_path, text.replace(old, new, 1))


@pytest.mark.parametrize("old,new,expect", [
    ("        K: 32\n", "", "missing bound for dimension K"),
    ("        K: 32\n", "        K: many\n", "bound of K must be a positive integer"),
    ("        K: 32\n", "        K: 2147483648\n", "bound of K must be a positive integer below 2**31"),
    ("factors: R=1,P=16,K=16", "factors: R=1,P=16,K=8", "factors of K multiply to 16 over all levels, but its bound is 32"),
    ("  - target: GlobalBuffer\n    type: temporal", "  - target: GlobalBuf\n    type: temporal", "unknown level 'GlobalBuf'"),
    ("factors: R=3,P=1,K=2", "factors: R=3,X=1,K=2", "unknown dimension 'X' in factors"),
    ("      - Outputs\n    bypass:", "      - Psums\n    bypass:", "unknown dataspace 'Psums'"),
    ("                depth: 32768\n", "                depth: lots\n", "depth must be a number"),
])
def test_bad_input_one_clear_message(tmp_path, capsys, old, new, expect):
    path = _mutate(tmp_path, old, new)
    with pytest.raises(SpecError) as e:
        jaxloop.load_spec(path)
    assert any(expect in p for p in e.value.problems), e.value.problems
    assert all(str(path) in p for p in e.value.problems)  # names the file
    assert main(["model", str(path), "--ert", str(TIMELOOP_REF / "tl03-conv1d+oc-3level-bypass" / "ERT.yaml")]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err


def test_line_numbers_and_all_problems_at_once(tmp_path):
    path = _mutate(tmp_path, "        K: 32\n        R: 3\n", "        K: x\n        R: 0\n")
    with pytest.raises(SpecError) as e:
        jaxloop.load_spec(path)
    msgs = "\n".join(e.value.problems)
    assert "bound of K" in msgs and "bound of R" in msgs
    assert f"{path}:" in msgs and "problem.instance.K" in msgs


def test_not_yaml_and_missing_file(tmp_path, capsys):
    bad = _write(tmp_path, "architecture: [unclosed\n")
    assert main(["model", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["model", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read file" in capsys.readouterr().err


def test_invalid_mapping_is_flagged_not_raised(tmp_path):
    """Over capacity / over fanout are per-mapping flags with reasons, not exceptions."""
    path = _mutate(tmp_path, "                depth: 64\n", "                depth: 1\n")
    spec = jaxloop.load_spec(path)
    _, st = evaluate_one(spec, load_tables(TIMELOOP_REF / "tl03-conv1d+oc-3level-bypass" / "ERT.yaml"))
    from jaxloop.model.status import reasons
    assert reasons(int(st.status[0])) == ["capacity: tiles kept at a level exceed its size"]


def test_attribute_expressions_use_variables(tmp_path):
    text = (TIMELOOP_REF / "tl03-conv1d+oc-3level-bypass" / "input.yaml").read_text()
    text = text.replace("                depth: 32768\n", "                depth: GLB_ROWS * 2\n", 1)
    spec = jaxloop.load_spec(_write(tmp_path, "variables: {GLB_ROWS: 16384}\n" + text))
    assert spec.arch.levels[1].size == 32768 * 8
    bad = _write(tmp_path, text)  # no variables: a clear error naming the attribute
    with pytest.raises(SpecError) as e:
        jaxloop.load_spec(bad)
    assert any("attribute depth: cannot evaluate 'GLB_ROWS * 2'" in p for p in e.value.problems)

