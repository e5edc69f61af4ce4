"""Spatial skipping (`skipping_spatial`, jaxloop/model/spatial_skip.py) by hand.

No reference case uses spatial skipping, so these are derivations from Timeloop's algorithm
(docs/spatial_skipping.md section 4) on a GEMM Z[m,n] = sum_k A[m,k] B[k,n], M=4 N=3 K=2:
a Buffer (A compressed, UOP-CP) fans out over M4 into PEs, each a Reg (A, B; Z bypasses it)
and a MAC. Buffer: temporal K2, spatial M4 (X); Reg: temporal N3. A has density 0.5.

With A 2:4 (fixed-structured) and B and Z skipped spatially on A, every M-fiber of A holds 2
non-zeros: 2 PEs suffice (max instances 4 -> 2), half of them work on average (eff = 0.5),
B's per-PE traffic halves and so do the computes (B is read-only): 12 of 24, in 12 / 2 = 6
cycles, and the same mapping fits a mesh of 2 PEs.
"""

import jax
import numpy as np
import pytest

import jaxloop
from jaxloop.compiler import compile_spec
from jaxloop.energy.ert import EnergyTable
from jaxloop.errors import SpecError
from jaxloop.mapspace import MappingBatch
from jaxloop.model.evaluate import _evaluate
from jaxloop.model.status import reasons
from jaxloop.report import stats_json
from jaxloop.spec.sparse import parse_sparse

_jit = jax.jit(_evaluate, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0})  # batches of one

DESIGN = """
architecture:
  version: '0.4'
  subtree:
  - name: system
    attributes: {technology: 45nm}
    local:
    - name: Buffer
      class: storage
      attributes: {depth: 64, width: 8, datawidth: 8, metadata_storage_depth: 64, metadata_storage_width: 8}
    subtree:
    - name: PE[0..LAST]
      local:
      - name: Reg
        class: storage
        attributes: {depth: 16, width: 8, datawidth: 8, meshX: MESH, decompression_supported: true}
      - name: MAC[0..LAST]
        class: intmac
        attributes: {datawidth: 8, meshX: MESH}
problem:
  shape:
    name: GEMM
    dimensions: [M, N, K]
    data_spaces:
    - {name: A, projection: [[[M]], [[K]]]}
    - {name: B, projection: [[[K]], [[N]]]}
    - {name: Z, projection: [[[M]], [[N]]], read_write: true}
  instance: {M: 4, N: 3, K: 2, densities: {A: {distribution: DIST, density: 0.5}}}
mapping:
- {target: Buffer, type: temporal, factors: M=1 N=1 K=2, permutation: MNK}
- {target: Buffer, type: spatial, factors: M=4 N=1 K=1}
- {target: Buffer, type: datatype, keep: [A, B, Z]}
- {target: Reg, type: temporal, factors: M=1 N=3 K=1, permutation: NMK}
- {target: Reg, type: datatype, keep: REG_KEEP}
sparse_optimizations:
  targets:
  - name: Buffer
    representation_format:
      data_spaces:
      - {name: A, ranks: [{format: UOP}, {format: CP}]}
    action_optimization: SAFS
"""
SKIP_B = "{type: skipping_spatial, options: [{target: B, condition_on: [A]}]}"
SKIP_Z = "{type: skipping_spatial, options: [{target: Z, condition_on: [A]}]}"
ERT = {"Buffer": {"read": 1.0, "write": 1.0, "update": 1.0, "metadata_read": 0.5, "metadata_write": 0.5, "leak": 0.0},
       "Reg": {"read": 0.1, "write": 0.1, "update": 0.1, "leak": 0.0}, "MAC": {"mac_random": 0.3, "leak": 0.0}}
REG, BUF = 0, 1
A, B, Z = 0, 1, 2


def _spec(tmp_path, mesh=4, dist="fixed_structured", safs=(SKIP_B, SKIP_Z), reg_keep="[A, B], bypass: [Z]"):
    text = (DESIGN.replace("LAST", str(mesh - 1)).replace("MESH", str(mesh)).replace("DIST", dist)
            .replace("SAFS", f"[{', '.join(safs)}]").replace("REG_KEEP", reg_keep))
    f = tmp_path / "design.yaml"
    f.write_text(text)
    return jaxloop.load_spec(f)


def _stats(tmp_path, **kw):
    spec = _spec(tmp_path, **kw)
    static, arr = compile_spec(spec, EnergyTable({k: dict(v) for k, v in ERT.items()}))
    return spec, static, _jit(static, arr, MappingBatch.from_mappings([spec.mapping]))


def _run(tmp_path, **kw):
    st = _stats(tmp_path, **kw)[2]
    return {f: np.asarray(getattr(st, f))[0] for f in st._fields}


def test_structured_leader_halves_instances_and_work(tmp_path):
    r = _run(tmp_path)
    assert reasons(int(r["status"])) == []
    assert (r["mac_instances"], r["avg_mac_instances"]) == (2, 2)
    assert (r["algorithmic_computes"], r["actual_computes"], r["compute_cycles"], r["cycles"]) == (24, 12, 6, 6)
    # Reg (per PE): B's 6 reads and fills lose floor(6 x 0.5); A is not a target, keeps its dense counts
    assert (r["actual_reads"][REG, B], r["actual_fills"][REG, B]) == (3, 3)
    assert (r["actual_reads"][REG, A], r["actual_fills"][REG, A]) == (6, 2)
    # 2 of the 4 PEs at most and on average, for every dataspace reduced from A's sparsity
    assert list(r["max_instances"][REG, :2]) == [2, 2] and list(r["avg_instances"][REG, :2]) == [2, 2]
    # the SAF level itself is untouched (A loses its zeros by compression, 8 -> 4 reads)
    assert (r["actual_reads"][BUF, A], r["actual_reads"][BUF, B], r["actual_reads"][BUF, Z]) == (4, 6, 12)
    assert r["skipped_reads"][BUF].sum() == r["gated_reads"][BUF].sum() == 0
    # Reg energy: per-PE actions over the 2 PEs that work on average
    np.testing.assert_allclose(r["energy_ds"][REG, B], 2 * (3 + 3) * 0.1)
    # the statistics JSON gives both, as Timeloop's "Utilized instances (max)" / "(average)"
    spec, static, st = _stats(tmp_path)
    js = stats_json(spec, static, st, keep=spec.mapping.keep)
    reg_b = js["levels"]["Reg"]["B"]
    assert (reg_b["utilized_instances"], reg_b["avg_utilized_instances"], reg_b["actual_reads"]) == (2, 2.0, 3)
    assert (js["mac_utilized_instances"], js["mac_avg_utilized_instances"], js["actual_computes"]) == (2, 2, 12)


def test_fewer_pes_fit_the_same_mapping(tmp_path):
    """The reduced fan-out (2) is what must fit the mesh: legal on 2 PEs, in the same 6 cycles.
    Without spatial skipping the M4 loop over-subscribes 2 PEs."""
    r = _run(tmp_path, mesh=2)
    assert reasons(int(r["status"])) == [] and r["cycles"] == 6
    np.testing.assert_allclose(r["energy_ds"][REG, B], 2 * (3 + 3) * 0.1)  # 4 mapped x 0.5 = the 2 PEs there are
    dense = _run(tmp_path, mesh=2, safs=())
    assert any(x.startswith("fanout X") for x in reasons(int(dense["status"])))


def test_an_unreduced_dataspace_keeps_the_instances(tmp_path):
    """Only B skipped: Z still needs 4 MACs (compute instances are the max over dataspaces), so
    the 12 computes take 3 cycles on 4 PEs (and 2 PEs would be too few)."""
    r = _run(tmp_path, safs=(SKIP_B,))
    assert (r["mac_instances"], r["avg_mac_instances"], r["actual_computes"], r["cycles"]) == (4, 4, 12, 3)
    assert list(r["max_instances"][REG, :2]) == [2, 2]  # B and A (its own compression) need 2


def test_target_stationary_in_child_sees_a_larger_leader_tile(tmp_path):
    """Z kept at Reg: Z's Reg tile stays put over Buffer's K2 loop (irrelevant to Z), so the
    leader tile of the co-iterated M loop is 2 elements of A, never empty under 2:4: no Z
    reduction (4 instances), while B (M not co-iterated) still halves."""
    r = _run(tmp_path, reg_keep="[A, B, Z]")
    assert (r["max_instances"][REG, Z], r["avg_instances"][REG, Z]) == (4, 4)
    assert (r["max_instances"][REG, B], r["avg_instances"][REG, B]) == (2, 2)
    assert (r["mac_instances"], r["avg_mac_instances"], r["cycles"]) == (4, 4, 3)


def test_uniform_leader_keeps_the_max_instances(tmp_path):
    """A hypergeometric (4 of 8 non-zero): any fiber of 4 can be full, so the max stays 4; the
    average halves at the PEs (P(A element empty) = 1/2). Timeloop passes average ratios down
    only where the max changed, so the MACs keep 4 average instances."""
    r = _run(tmp_path, dist="hypergeometric")
    assert list(r["max_instances"][REG, :2]) == [4, 4]
    np.testing.assert_allclose(r["avg_instances"][REG, :2], [2, 2], rtol=1e-12)  # P_empty from lgamma
    assert (r["mac_instances"], r["avg_mac_instances"]) == (4, 4)


@pytest.mark.parametrize("safs, message", [
    (("{type: skipping_spatial, options: [{target: B, condition_on: [A, Z]}]}",), "exactly one condition_on"),
    ((SKIP_B, "{type: skipping, options: [{target: B, condition_on: [A]}]}"), "both skipping_spatial and"),
    ((SKIP_B, SKIP_B), "more than one skipping_spatial"),
])
def test_unsupported_combinations_are_refused(tmp_path, safs, message):
    """Each with the file, line and key (the CLI prints it and exits 2)."""
    with pytest.raises(SpecError, match=message) as e:
        parse_sparse(_spec(tmp_path, safs=safs))
    assert "design.yaml:" in str(e.value) and "sparse_optimizations" in str(e.value)


TWO_LEVELS = [  # 2 MACs along Y below each Reg; A (1:4) compressed there too, B at Buffer; Z skipped at Reg on B
    ("- name: PE[0..LAST]", "- name: PE[0..LAST]"),
    ("      - name: MAC[0..LAST]\n        class: intmac\n        attributes: {datawidth: 8, meshX: MESH}",
     "      - name: MAC[0..7]\n        class: intmac\n        attributes: {datawidth: 8, meshX: MESH, meshY: 2}"),
    ("{M: 4, N: 3, K: 2, densities: {A: {distribution: DIST, density: 0.5}}}",
     "{M: 8, N: 4, K: 4, densities: {A: {distribution: DIST, density: 0.25}, "
     "B: {distribution: hypergeometric, density: 0.25}}}"),
    ("      - {name: A, ranks: [{format: UOP}, {format: CP}]}\n    action_optimization: SAFS",
     "      - {name: A, ranks: [{format: UOP}, {format: CP}]}\n      - {name: B, ranks: [{format: UOP}, {format: CP}]}"
     "\n    action_optimization: SAFS\n  - name: Reg\n"
     "    representation_format: {data_spaces: [{name: A, ranks: [{format: UOP}, {format: CP}]}]}\n"
     "    action_optimization:\n"
     "    - {type: skipping_spatial, options: [{target: Z, condition_on: [B]}]}"),
    ("factors: M=1 N=1 K=2, permutation: MNK", "factors: M=1 N=1 K=4, permutation: MNK"),
    ("factors: M=1 N=3 K=1, permutation: NMK", "factors: M=2 N=4 K=1, permutation: NMK"),
]


@pytest.mark.parametrize("dist", ["fixed_structured", "hypergeometric"])
def test_instances_match_literal_port(tmp_path, dist):
    """max X / Y and average ratio of every level and dataspace, the MAC instances and the fan-out
    check of the kernel equal jaxloop.sparse_reference's loop-by-loop port of Timeloop's three
    functions, on random mappings of a design with two fan-out levels and nested SAFs."""
    from test_sparse import _random_mappings

    from jaxloop import sparse_reference as ref
    from jaxloop.model import density, sparse
    from jaxloop.model.tiling import footprint

    text = DESIGN
    for old, new in TWO_LEVELS:
        assert old in text
        text = text.replace(old, new)
    text = (text.replace("LAST", "3").replace("MESH", "4").replace("DIST", dist)
            .replace("SAFS", f"[{SKIP_B}, {SKIP_Z}]").replace("REG_KEEP", "[A, B], bypass: [Z]"))
    f = tmp_path / "two.yaml"
    f.write_text(text)
    spec = jaxloop.load_spec(f)
    static, arr = compile_spec(spec, EnergyTable({k: dict(v) for k, v in ERT.items()}))
    batch = _random_mappings(spec, 30, np.random.default_rng(3))
    out = jax.jit(sparse.internals, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0})(
        static, arr, batch)["spatial"]
    out = {k: np.asarray(v) for k, v in out.items()}
    sp = static.sparse
    size = [float(footprint(np.asarray(spec.workload.bounds, float), r)) for r in static.ranks]
    models = [density.model(sp.density_kind[t], arr["sp_density"][t], size[t], sp.grid) for t in range(3)]

    def p_empty(t, n):
        return float(models[t].p_empty(np.float64(n)))

    def max_num_elements(t, fiber, element, f):
        k = models[t].max_occupancy(np.float64(fiber))
        return int(np.clip(np.ceil(f * (1.0 - float(models[t].p_empty_given(element, fiber, k))) - 1e-9), 1, f))

    reduced = 0
    for i in range(batch.size):
        want = ref.spatial_instances(spec, sp, static, batch.mapping(i), p_empty, max_num_elements)
        for t in range(3):
            assert out["arch_x"][i, :, t].tolist() == want["X"][t], (i, t)
            assert out["arch_y"][i, :, t].tolist() == want["Y"][t], (i, t)
            np.testing.assert_allclose(out["arch_ratio"][i, :, t], want["ratio"][t], rtol=1e-12, err_msg=f"{i} {t}")
        assert (out["mac_max"][i], out["mac_avg"][i]) == (want["mac_max"], want["mac_avg"]), i
        assert bool(out["fanout_x"][i] | out["fanout_y"][i]) == want["fanout_fail"], i
        reduced += want["mac_max"] < np.prod(batch.spatial_x[i]) * np.prod(batch.spatial_y[i])
    assert dist == "hypergeometric" or reduced > 0  # the structured leader does reduce instances


def test_mapper_finds_the_oversubscribed_mapping(tmp_path):
    """On 2 PEs only a spatial M4 (over-subscribed, legal after skipping) reaches 6 cycles; every
    mapping whose dense fan-out fits needs 12. The mapspace of a design with spatial skipping
    keeps such factors (Timeloop's mapper turns its fan-out filter off), so the search finds it."""
    from jaxloop.constraints import load_mapper_inputs
    from jaxloop.mapspace import Mapspace
    from jaxloop.search import Objective, exhaustive

    _spec(tmp_path, mesh=2)
    spec, cons = load_mapper_inputs(tmp_path / "design.yaml")
    static, karr = compile_spec(spec, EnergyTable({k: dict(v) for k, v in ERT.items()}), links=False)
    best = {}
    for prune in (None, True):
        ms = Mapspace(spec, cons, prune_fanout=prune)
        res = exhaustive(ms, static, karr, Objective.parse(spec, "delay"), chunk=1024, progress=False)
        assert res.complete
        best[ms.prune_fanout] = (res.best_values[0], ms.decode(np.array([res.best_index])))
    assert best[True][0] == 12 and best[False][0] == 6
    m = best[False][1]
    assert int(np.prod(np.asarray(m.spatial_x)[0, BUF])) == 4  # M4 over the 2 PEs
