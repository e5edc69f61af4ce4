"""Energy/area estimation from component attributes (jaxloop.energy.estimate and friends)."""

import argparse
import copy

import pytest
import yaml

from jaxloop.energy import cache, cacti, primitives
from jaxloop.energy.attrs import Attributes, split_range
from jaxloop.energy.cli import add_parser
import jaxloop
from jaxloop.energy.ert import load_tables
from jaxloop.energy.estimate import estimate_tables, write_art, write_ert
from jaxloop.energy.expr import ExprError, attribute_value, evaluate
from jaxloop.errors import SpecError

from conftest import TIMELOOP_REF as REF  # noqa: E402


def load_case(name):
    return yaml.safe_load((REF / name / "input.yaml").read_text())


def ref_tables(name):
    return load_tables(REF / name / "ERT.yaml", REF / name / "ART.yaml")


@pytest.fixture(scope="module")
def have_cacti():
    return cacti.cacti_dir() is not None


def small_arch(local, classes=(), top=None):
    """An input document with one subtree of `local` components."""
    return {
        "architecture": {
            "version": "0.4",
            "subtree": [{"name": "top", "attributes": top or {"technology": "40nm", "global_cycle_seconds": 1e-9},
                         "local": local}],
        },
        "compound_components": {"version": "0.4", "classes": list(classes)},
    }


# --- expressions -------------------------------------------------------------------------


def test_expression_arithmetic():
    names = {"depth": 16, "width": 8, "real_depth": 24}
    ev = lambda s: evaluate(s, names.__getitem__)  # noqa: E731
    assert ev("depth * width") == 128
    assert ev("max(32, width)") == 32
    assert ev("ceil(log2(real_depth))") == 5
    assert ev("max(1, ceil(log2(depth))) if depth >= 1 else 1") == 4
    assert ev("width / 32 * (depth / 64) ** (1.56 / 2)") == pytest.approx(0.25 * 0.25**0.78)
    assert ev("-depth + 2 ** 3 % 5") == -13
    assert ev("depth > 8 and width < 8 or depth == 16") is True
    assert ev("1 < width <= 8") is True
    assert ev("1e-9") == 1e-9


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",
    "().__class__.__bases__",
    "depth.__class__",
    "[x for x in (1, 2)]",
    "lambda: 1",
    "open('/etc/passwd')",
    "depth[0]",
    "10 ** 10 ** 10",
    "2 ** 5000",
    "'a' * 1000000",
    "max(depth, key=abs)",
])
def test_expression_rejects_unsafe(text):
    with pytest.raises(ExprError):
        evaluate(text, {"depth": 4}.__getitem__)


def test_expression_unknown_name_and_syntax():
    with pytest.raises(ExprError, match="unknown name 'dept'"):
        evaluate("dept * 2", {"depth": 4}.__getitem__)
    with pytest.raises(ExprError, match="cannot parse"):
        attribute_value("depth * (2", {"depth": 4}.__getitem__)


def test_attribute_value_strings_stay_strings():
    look = {"width": 8}.__getitem__
    assert attribute_value("LPDDR4", look) == "LPDDR4"
    assert attribute_value("40nm", look) == "40nm"
    assert attribute_value("SET ME", look) == "SET ME"
    assert attribute_value("width", look) == 8
    assert attribute_value("1e-9", look) == 1e-9
    assert attribute_value(64, look) == 64


def test_attributes_resolve_in_any_order_and_detect_cycles():
    a = Attributes("buf (smartbuffer_RF)")
    a.set("widthscale", "width / memory_width")
    a.set("memory_width", "max(32, width)")
    a.set("width", 16)
    assert a["widthscale"] == 0.5
    a.set("x", "y + 1")
    a.set("y", "x + 1")
    with pytest.raises(SpecError, match="buf .*'x'|buf .*'y'"):
        a["x"]
    a.set("depth", "must_specify")
    with pytest.raises(SpecError, match=r"buf \(smartbuffer_RF\): attribute 'depth' must be specified"):
        a["depth"]


def test_split_range():
    a = Attributes("c")
    a.set("width", 8)
    a.set("depth", 4)
    assert split_range("storage[1..width*depth]", a) == ("storage", 1, 32)
    assert split_range("address_generators[1]", a) == ("address_generators", 1, 1)
    assert split_range("mac", a) == ("mac", None, None)
    with pytest.raises(SpecError, match="empty index range"):
        split_range("x[3..1]", a, "c")


def test_variables_and_inherited_attributes():
    """Top-level `variables`, subtree attributes inherited, Timeloop's default 1 ns clock."""
    doc = {"variables": {"W": 16, "D": "W * 2"},
           "architecture": {"subtree": [{"name": "t", "attributes": {"technology": "40nm"},
                                         "local": [{"name": "rf", "class": "regfile",
                                                    "attributes": {"depth": "D", "width": "W"}}]}]}}
    t = estimate_tables(doc)
    # 16 one-bit register reads + 32 comparators of ceil(log2(32)) = 5 bits, Aladdin at 40 nm
    assert t.energy["rf"]["read"] == pytest.approx(16 * 0.009 + 32 * 0.02947 * 5 / 32)


# --- compound expansion -----------------------------------------------------------------


def _adder_pj(tech, width, action="add"):
    from hwcomponents_library.library.aladdin import AladdinAdder

    return getattr(AladdinAdder(tech, width), action)().energy * 1e12


def _adder_um2(tech, width):
    from hwcomponents_library.library.aladdin import AladdinAdder

    return AladdinAdder(tech, width).area * 1e12


def test_compound_expansion_small():
    """Ranges, energy_scale, repeat, area_scale, nesting, inherited technology."""
    pair = {
        "name": "adder_pair",
        "attributes": {"technology": "must_specify", "bits": "must_specify", "half": "bits // 2"},
        "subcomponents": [
            {"name": "adders[0..1]", "class": "aladdin_adder", "attributes": {"width": "half"}},
        ],
        "actions": [
            {"name": "add", "subcomponents": [{"name": "adders[0..1]", "actions": [{"name": "add"}]}]},
            {"name": "leak", "subcomponents": [{"name": "adders[0..1]", "actions": [{"name": "leak"}]}]},
        ],
    }
    quad = {
        "name": "adder_quad",
        "attributes": {"technology": "must_specify", "width": 16, "k": 3},
        "subcomponents": [
            {"name": "pairs[1..2]", "class": "adder_pair", "area_scale": "0.5", "attributes": {"bits": "width * 2"}},
            {"name": "extra", "class": "aladdin_adder", "attributes": {"width": "width"}},
        ],
        "actions": [
            {"name": "compute", "subcomponents": [
                {"name": "pairs[1..2]", "actions": [{"name": "add", "energy_scale": "0.25"}]},
                {"name": "extra", "actions": [{"name": "add", "repeat": "k"}]},
            ]},
        ],
    }
    doc = small_arch([{"name": "alu[1..4]", "class": "adder_quad", "attributes": {}}], [pair, quad])
    t = estimate_tables(doc)
    # 2 pairs x 0.25 x (2 adders of 16 bits) + 3 x one 16-bit adder
    expect = 2 * 0.25 * 2 * _adder_pj(40e-9, 16) + 3 * _adder_pj(40e-9, 16)
    assert t.energy["alu"] == {"compute": pytest.approx(expect)}
    assert t.area["alu"] == pytest.approx(2 * 0.5 * 2 * _adder_um2(40e-9, 16) + _adder_um2(40e-9, 16))
    assert "compound adder_quad" in t.source["alu"] and "AladdinAdder" in t.source["alu"]


def test_compound_action_errors():
    bad = {
        "name": "bad",
        "attributes": {"technology": "must_specify"},
        "subcomponents": [{"name": "a[0..1]", "class": "aladdin_adder", "attributes": {"width": 8}}],
        "actions": [{"name": "read", "subcomponents": [{"name": "b", "actions": [{"name": "add"}]}]},
                    {"name": "write", "subcomponents": [{"name": "a[0..5]", "actions": [{"name": "add"}]}]},
                    {"name": "update", "subcomponents": [{"name": "a[0]", "actions": [{"name": "fly"}]}]}],
    }
    for action, msg in [("read", "unknown subcomponent 'b'"), ("write", "outside"), ("update", "no action 'fly'")]:
        cls = copy.deepcopy(bad)
        cls["actions"] = [a for a in cls["actions"] if a["name"] == action]
        with pytest.raises(SpecError, match=msg):
            estimate_tables(small_arch([{"name": "x", "class": "bad", "attributes": {}}], [cls]))


# --- primitives vs the reference ERTs ----------------------------------------------------


def ratio(ours, ref, comp, action):
    return ours.energy[comp][action] / ref.energy[comp][action]


def test_regfile_and_intmac_40nm_match_tutorial():
    """tl0x: built-in regfile (registers + log2(depth)-bit comparators) and AladdinIntMAC."""
    ours, ref = estimate_tables(load_case("tl00-conv1d-1level")), ref_tables("tl00-conv1d-1level")
    for action in ("read", "write", "update"):
        assert ratio(ours, ref, "Buffer", action) == pytest.approx(1, rel=0.01)
    assert ratio(ours, ref, "MACC", "compute") == pytest.approx(1, rel=0.01)


def test_sram_40nm_within_10pct(have_cacti):
    assert have_cacti, "CACTI could not be run or built here (jaxloop.energy.cacti)"
    ours, ref = estimate_tables(load_case("tl03-conv1d+oc-3level-bypass")), ref_tables("tl03-conv1d+oc-3level-bypass")
    for action in ("read", "write", "update"):
        assert abs(ratio(ours, ref, "GlobalBuffer", action) - 1) <= 0.10, action
    assert 1.0 <= ratio(ours, ref, "GlobalBuffer", "leak") <= 1.15  # measured 1.10 (n_banks=2 leakage)
    assert ours.area["GlobalBuffer"] / ref.area["GlobalBuffer"] == pytest.approx(1, abs=0.10)
    # DRAM without `type`: LPDDR4, 8 pJ/bit over a 256-bit word
    assert ours.energy["MainMemory"]["read"] == pytest.approx(2048)
    assert ours.energy["MainMemory"]["leak"] == 0


@pytest.mark.parametrize("case,comp", [
    ("ed-eyeriss_like", "shared_glb"),              # 32 nm, 16384 x 64
    ("ed-simple_output_stationary", "pe_spad"),     # 45 nm, 192 x 16
    ("ed-simba_like", "GlobalBuffer"),              # 45 nm, 2048 x 256
])
def test_smartbuffer_sram_within_10pct(case, comp, have_cacti):
    assert have_cacti, "CACTI could not be run or built here (jaxloop.energy.cacti)"
    ours, ref = estimate_tables(load_case(case)), ref_tables(case)
    for action in ("read", "write", "update"):
        assert abs(ratio(ours, ref, comp, action) - 1) <= 0.10, action
    assert ours.energy["DRAM"]["read"] == pytest.approx(512)  # LPDDR4 x 64 bit


def test_aladdin_based_classes_measured_offset():
    """Measured, documented disagreement: hwcomponents-library labels the Aladdin tables 40 nm,
    Accelergy's library plug-in labelled the same numbers 45 nm. Every Aladdin-based energy
    at 32 or 45 nm is therefore tech_node_energy(45nm)/tech_node_energy(40nm) = 1.151 x the
    reference; register writes (0.009 pJ/bit here, 0 in the old table) add up to ~14% more
    on writes of register-file buffers. See docs/energy.md."""
    from hwcomponents.scaling import tech_node_energy

    k = tech_node_energy(45e-9, 40e-9)
    assert k == pytest.approx(1.151, abs=0.001)
    ours, ref = estimate_tables(load_case("ed-eyeriss_like")), ref_tables("ed-eyeriss_like")
    assert ratio(ours, ref, "mac", "compute") == pytest.approx(k, rel=0.002)
    for comp in ("ifmap_spad", "weights_spad", "psum_spad"):  # smartbuffer_RF, 32 nm
        assert 1.10 <= ratio(ours, ref, comp, "read") <= 1.25, comp
        assert 1.15 <= ratio(ours, ref, comp, "write") <= 1.40, comp
    ours, ref = estimate_tables(load_case("sl-01.2.1-DUDU-dot-product")), ref_tables("sl-01.2.1-DUDU-dot-product")
    assert ratio(ours, ref, "Buffer", "read") == pytest.approx(k, rel=0.002)  # storage/regfile, 45 nm


def test_every_reference_case_estimates():
    for folder in sorted(REF.iterdir()):
        if not (folder / "input.yaml").exists():
            continue
        t = estimate_tables(load_case(folder.name))
        ref = ref_tables(folder.name)
        for comp, actions in ref.energy.items():
            assert comp in t.energy, (folder.name, comp)
            for action in actions:
                assert action in t.energy[comp], (folder.name, comp, action)
                assert t.energy[comp][action] >= 0


def test_fp_units_from_table():
    fpmac = {
        "name": "fpmac",
        "attributes": {"technology": "must_specify", "multiplier_width": "must_specify", "adder_width": "must_specify"},
        "subcomponents": [
            {"name": "fpadder", "class": "fpadder", "attributes": {"exponent": 8, "mantissa": "adder_width - exponent"}},
            {"name": "fpmultiplier", "class": "fpmultiplier",
             "attributes": {"exponent": 8, "mantissa": "multiplier_width - exponent"}},
        ],
        "actions": [{"name": "compute", "subcomponents": [
            {"name": "fpadder", "actions": [{"name": "add"}]},
            {"name": "fpmultiplier", "actions": [{"name": "multiply"}]}]}],
    }
    doc = small_arch([{"name": "mac", "class": "fpmac", "attributes": {"multiplier_width": 32, "adder_width": 32}}],
                     [fpmac], top={"technology": "45nm", "global_cycle_seconds": 1e-9})
    t = estimate_tables(doc)
    assert t.energy["mac"]["compute"] == pytest.approx(0.9 + 3.7)  # Horowitz ISSCC'14, FP32 at 45 nm
    assert "FPAdder" in t.source["mac"]


# --- output files, cache, CLI ------------------------------------------------------------


def table_only_doc():
    """Table models only (no CACTI): DRAM, regfile, intmac, dummy."""
    return small_arch([
        {"name": "DRAM[1..1]", "class": "DRAM", "attributes": {"type": "HBM2", "width": 1024}},
        {"name": "rf[1..16]", "class": "regfile", "attributes": {"depth": 32, "width": 16}},
        {"name": "net[1..1]", "class": "dummy_storage", "attributes": {"depth": 1, "width": 1}},
        {"name": "mac[1..16]", "class": "intmac", "attributes": {"width": 8}},
    ])


def test_ert_art_round_trip(tmp_path):
    t = estimate_tables(table_only_doc())
    write_ert(t, tmp_path / "ERT.yaml")
    write_art(t, tmp_path / "ART.yaml")
    back = load_tables(tmp_path / "ERT.yaml", tmp_path / "ART.yaml")
    assert back.energy == t.energy
    assert back.area == t.area
    assert t.energy["DRAM"]["read"] == pytest.approx(6.25 * 1024)
    assert t.energy["net"] == {"read": 0, "write": 0, "update": 0, "leak": 0}
    assert set(t.energy["mac"]) == {"compute", "leak"}


def test_cache_hit_skips_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLOOP_CACHE", str(tmp_path))
    calls = []
    real = primitives.compute_primitive

    def counting(*args, **kw):
        calls.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(primitives, "compute_primitive", counting)
    first = estimate_tables(table_only_doc())
    assert calls, "the first estimate must query hwcomponents"
    assert any((tmp_path / "estimates").rglob("*.json"))
    calls.clear()
    cache.clear_memory()  # as a fresh process would: only the files remain
    second = estimate_tables(table_only_doc())
    assert calls == []
    assert second.energy == first.energy and second.area == first.area and second.source == first.source
    # a changed attribute is a different key
    doc = table_only_doc()
    doc["architecture"]["subtree"][0]["local"][1]["attributes"]["depth"] = 64
    estimate_tables(doc)
    assert calls


def test_cacti_fallback_is_explicit(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("JAXLOOP_CACTI", "off")
    monkeypatch.setenv("JAXLOOP_CACHE", str(tmp_path))
    cacti.reset()
    primitives._messages.clear()
    try:
        doc = small_arch([{"name": "buf", "class": "SRAM", "attributes": {"depth": 8192, "width": 64}}],
                         top={"technology": "45nm", "global_cycle_seconds": 1e-9})
        t = estimate_tables(doc)
        assert "TableSRAM" in t.source["buf"]
        assert t.energy["buf"]["read"] == pytest.approx(25.8695)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "CACTI unavailable" in err[0]
        assert not any((tmp_path / "estimates").rglob("*.json"))  # fallbacks are not cached
    finally:
        cacti.reset()


def test_cli_energy(tmp_path, capsys):
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(table_only_doc()))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["energy", str(tmp_path / "arch.yaml"),
                              "--out", str(tmp_path / "ERT.yaml"), "--area", str(tmp_path / "ART.yaml")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "rf" in out and "hwcomponents:" in out and "compute" in out
    assert load_tables(tmp_path / "ERT.yaml", tmp_path / "ART.yaml").energy["rf"]["read"] > 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(small_arch([{"name": "x", "class": "SRAM", "attributes": {}}])))
    args = parser.parse_args(["energy", str(tmp_path / "bad.yaml")])
    assert args.func(args) == 2
    assert "x (SRAM)" in capsys.readouterr().err


# --- bad specs ---------------------------------------------------------------------------


@pytest.mark.parametrize("component,message", [
    ({"name": "q", "class": "quantum_flux_capacitor", "attributes": {}}, r"q \(quantum_flux_capacitor\): unknown component class"),
    ({"name": "q", "class": "smartbuffer_SRAM", "attributes": {"width": 64}}, r"q \(smartbuffer_SRAM\): attribute 'depth' must be specified"),
    ({"name": "q", "class": "regfile", "attributes": {"width": 8, "depth": "16 * (2"}}, r"q \(regfile\): attribute 'depth': cannot parse"),
    ({"name": "q", "class": "regfile", "attributes": {"width": 8, "depth": "__import__('os').getpid()"}},
     r"q \(regfile\): attribute 'depth': function .* is not allowed"),
    ({"name": "q", "class": "regfile", "attributes": {"width": 8, "depth": "deep * 2"}}, r"attribute 'depth': unknown name 'deep'"),
    ({"name": "q", "class": "SRAM", "attributes": {"width": 8}}, r"q \(SRAM\): attribute 'depth' is required"),
    ({"name": "q", "class": "intmac", "attributes": {"width": 8, "technology": "SET ME"}}, r"q \(intmac\): attribute 'technology'"),
    ({"name": "q", "class": "DRAM", "attributes": {"width": 64, "type": "GDDR9"}}, r"q \(DRAM\): attribute 'type'"),
])
def test_bad_specs_raise_spec_error(component, message):
    with pytest.raises(SpecError, match=message):
        estimate_tables(small_arch([component]))


def test_bad_document_shapes():
    with pytest.raises(SpecError, match="architecture"):
        estimate_tables({"problem": {}})
    with pytest.raises(SpecError, match="two components are named"):
        estimate_tables(small_arch([{"name": "a", "class": "dummy_storage"}, {"name": "a[1..2]", "class": "dummy_storage"}]))


@pytest.mark.parametrize("case", ["tl03-conv1d+oc-3level-bypass", "ed-simba_like", "tla-eyeriss-like-fpmac-vgg02l5"])
def test_model_without_ert_runs_and_stays_close(case):
    """`jaxloop model` without --ert estimates the table itself; with it, Timeloop's numbers
    (tests/test_model.py). Totals agree with Accelergy's within 25 % except tla-fpmac, whose
    floating-point MAC hwcomponents cannot model (docs/energy.md). All 31 cases:
    benchmarks/energy_vs_accelergy.py."""
    from jaxloop.energy.tables import tables_for
    from jaxloop.model.evaluate import evaluate_one

    spec = jaxloop.load_spec(REF / case / "input.yaml")
    ours = float(evaluate_one(spec, tables_for(spec))[1].energy[0])
    theirs = float(evaluate_one(spec, load_tables(REF / case / "ERT.yaml"))[1].energy[0])
    assert ours > 0
    if "fpmac" not in case:
        assert 0.75 <= ours / theirs <= 1.25, ours / theirs
