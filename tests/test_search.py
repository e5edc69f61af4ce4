"""Search: objectives and Timeloop's comparison, exhaustive optimum vs Timeloop's mapper,
checkpoint/resume (in process and after SIGKILL), random/hybrid, the `jaxloop map` command."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest
from conftest import REPO, TIMELOOP_REF

from jaxloop.compiler import compile_spec
from jaxloop.constraints import load_mapper_inputs
from jaxloop.energy.ert import load_tables
from jaxloop.errors import SpecError
from jaxloop.mapspace import Mapspace
from jaxloop.search import (Evaluator, MapperSettings, Objective, exhaustive, hybrid, random_pruned, random_search,
                            top_rows)
from jaxloop.timeloop_stats import parse_stats

TL05 = {name: TIMELOOP_REF / f"tl05-mapper-conv1d+oc-3level-{name}" for name in ("freebypass", "null")}
CONS = {"freebypass": "conv1d+oc-3level-freebypass", "null": "null"}
CHUNK = 256  # one compiled step shared by every exhaustive test on tl05-null (and the CLI runs below)
_cache = {}
# A persistent compilation cache for this session, shared with the `jaxloop map` subprocesses:
# they compile exactly the step the in-process runs compiled (same chunk, top-k, --keep-all).
JAX_CACHE = tempfile.mkdtemp(prefix="jaxloop-test-jit-")
jax.config.update("jax_compilation_cache_dir", JAX_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
SUB_ENV = {**os.environ, "PYTHONPATH": str(REPO), "JAX_COMPILATION_CACHE_DIR": JAX_CACHE,
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}


def files(name):
    d = TL05[name]
    return [d / "input.yaml", d / "mapper-src/constraints" / f"{CONS[name]}.constraints.yaml",
            d / "mapper-src/mapper/exhaustive.mapper.yaml"]


def setup(name):
    if name not in _cache:
        spec, c = load_mapper_inputs(*files(name))
        ms = Mapspace(spec, c)
        d = TL05[name]
        static, karr = compile_spec(spec, load_tables(d / "ERT.yaml", d / "ART.yaml"))
        obj = Objective.parse(spec, MapperSettings.from_doc(spec.doc).metrics)
        ev = Evaluator(ms, static, karr, obj, topk=10, chunk=CHUNK, keep_rows=True)
        _cache[name] = (spec, ms, static, karr, obj, ev)
    return _cache[name]


def full_run(name):
    key = ("run", name)
    if key not in _cache:
        spec, ms, static, karr, obj, ev = setup(name)
        _cache[key] = exhaustive(ms, static, karr, obj, keep_all=True, progress=False, evaluator=ev)
    return _cache[key]


def timeloop_best(name):
    s = parse_stats(TL05[name] / "exercise-mapper.stats.txt")["summary"]
    return [float(s["Cycles"]), s["fJ/Compute"]["Total"] * s["Computes"] / 1e3]  # [delay, energy pJ]


# ------------------------------------------------------------------------------ objectives

def test_objective_parsing_and_timeloop_rule():
    spec, *_ = setup("null")
    o = Objective.parse(spec, ["delay", "energy"])
    assert o.lexicographic and o.names == ("delay", "energy")
    assert Objective.parse(spec, "delay,energy").names == ("delay", "energy")
    w = Objective.parse(spec, "0.5*energy + 2*delay")
    assert not w.lexicographic and w.weights == (0.5, 2.0) and w.M == 1
    assert Objective.parse(spec, {"energy": 1, "edp": 3}).weights == (1.0, 3.0)
    assert Objective.parse(spec, ["ordered_accesses"]).names == tuple(
        f"accesses-{n}" for n in reversed(spec.arch.names))
    with pytest.raises(SpecError, match="unknown objective"):
        Objective.parse(spec, "speed")
    # Timeloop: > 0.1 % on the first metric decides; within it, the next metric decides
    assert o.better([100.0, 50.0], [101.0, 10.0])
    assert o.better([100.05, 50.0], [100.0, 60.0])  # delay within 0.1 %: energy decides
    assert not o.better([100.2, 50.0], [100.0, 60.0])  # delay 0.2 % worse
    assert o.better([100.0, 59.99], [100.0, 60.0]) and not o.better([100.0, 60.0], [100.0, 60.0])
    assert o.better([1.0, 1.0], None) and not o.better(None, [1.0, 1.0])


def test_top_rows_exact_lexicographic():
    rng = np.random.default_rng(0)
    v = np.stack([rng.integers(0, 3, 500).astype(float), rng.random(500)], axis=1)
    v[rng.random(500) < 0.3] = np.inf
    got = top_rows(v, 7)
    finite = np.nonzero(np.isfinite(v[:, 0]))[0]
    want = finite[np.lexsort((finite, v[finite, 1], v[finite, 0]))][:7]
    assert list(got) == list(want)


def test_mapper_settings():
    spec, *_ = setup("null")
    s = MapperSettings.from_doc(spec.doc)
    assert s.algorithm == "exhaustive" and s.metrics == ["delay", "energy"] and s.timeout == 0
    s2 = MapperSettings.from_doc({"mapper": {"algorithm": "random_pruned", "victory_condition": 500,
                                             "max_permutations_per_if_visit": 8, "search_size": 100}})
    assert (s2.algorithm, s2.victory_condition, s2.max_permutations_per_if_visit, s2.search_size) == \
        ("random-pruned", 500, 8, 100)
    with pytest.raises(SpecError):
        MapperSettings.from_doc({"mapper": {"algorithm": "annealing"}})


# ------------------------------------------------------------------------------ exhaustive

@pytest.mark.parametrize("name", ["freebypass", "null"])
def test_exhaustive_at_least_as_good_as_timeloop(name):
    spec, ms, static, karr, obj, ev = setup(name)
    res = full_run(name) if name == "null" else exhaustive(ms, static, karr, obj, progress=False, chunk=64)
    assert res.complete and res.reduction.evaluated == ms.size
    ref = timeloop_best(name)
    assert not obj.better(ref, res.best_values), (res.best_values, ref)
    if name == "freebypass":  # the same optimum as Timeloop's exhaustive mapper
        assert abs(res.best_values[1] - ref[1]) <= 0.02
    else:  # Timeloop stopped at its first invalid mapping (timeout: 0); the full walk does far better
        assert res.best_values[1] < 0.2 * ref[1]


def test_exhaustive_reductions_are_consistent():
    spec, ms, static, karr, obj, ev = setup("null")
    res = full_run("null")
    red, rows = res.reduction, res.all_rows
    assert len(rows["index"]) == ms.size and (np.sort(rows["index"]) == np.arange(ms.size)).all()
    valid = rows["status"] == 0
    assert red.valid == valid.sum() == red.hist_energy.sum() == red.hist_cycles.sum()
    for b in range(len(red.invalid_bits)):
        assert red.invalid_bits[b] == ((rows["status"] >> b) & 1).sum()
    # top-k: the exact lexicographic order of all valid rows
    v = np.where(valid[:, None], rows["values"], np.inf)
    want = rows["index"][top_rows(v, 10)]
    assert res.top_index == list(want)
    # the best (Timeloop's rule) is within tolerance of the exact minimum, and decodes to itself
    assert not obj.better(list(v[top_rows(v, 1)[0]]), res.best_values)
    m = ms.mapping(res.best_index)
    assert ms.encode(m) == res.best_index
    assert (res.best_batch.temporal[0] == m.temporal).all()


def test_checkpoint_resume_in_process(tmp_path):
    spec, ms, static, karr, obj, ev = setup("null")
    ck = tmp_path / "run.ckpt"
    part = exhaustive(ms, static, karr, obj, keep_all=True, progress=False, evaluator=ev, budget=100 * CHUNK,
                      checkpoint=ck, checkpoint_every=0)
    assert not part.complete and ck.exists()
    state = json.loads(ck.read_text())
    assert int(state["next"]) == 100 * CHUNK
    rest = exhaustive(ms, static, karr, obj, keep_all=True, progress=False, evaluator=ev, checkpoint=ck,
                      checkpoint_every=0.5)
    full = full_run("null")
    assert rest.complete and not ck.exists()
    assert rest.best_index == full.best_index and rest.best_values == full.best_values
    assert rest.top_index == full.top_index
    assert rest.reduction.evaluated == ms.size
    assert (rest.reduction.hist_energy == full.reduction.hist_energy).all()
    assert (np.sort(rest.all_rows["index"]) == np.arange(ms.size)).all()


def test_workers_give_the_in_process_result():
    """Exhaustive on two worker processes (jaxloop.workers): the same best, top-k, histograms,
    invalid counts and every row as in this process; and a worker's failure is an error here."""
    from jaxloop.workers import Workers

    spec, ms, static, karr, obj, ev = setup("null")
    full = full_run("null")
    with Workers(ev, 2) as w:
        assert w.step == CHUNK // 2
        res = exhaustive(ms, static, karr, obj, keep_all=True, progress=False, evaluator=w)
    r, f = res.reduction, full.reduction
    assert res.complete and r.evaluated == f.evaluated == ms.size and r.valid == f.valid
    assert res.best_index == full.best_index and res.best_values == full.best_values
    assert res.top_index == full.top_index
    for a, b in ((r.hist_energy, f.hist_energy), (r.hist_cycles, f.hist_cycles), (r.invalid_bits, f.invalid_bits)):
        assert (a == b).all()
    for k in ("index", "energy", "cycles", "status"):
        assert np.array_equal(res.all_rows[k], full.all_rows[k])
    with pytest.raises(ValueError, match="equal pieces"):
        Workers(ev, 3)


def _children(pid):
    """PIDs of the live processes whose parent is `pid`."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def _map_cmd(out, extra=()):
    return [sys.executable, "-m", "jaxloop.commands.map", *map(str, files("null")), "--ert",
            str(TL05["null"] / "ERT.yaml"), "--search", "exhaustive", "--chunk", str(CHUNK), "--no-progress",
            "--json", str(out / "best.json"), "--map-out", str(out / "best.yaml"), "--checkpoint",
            str(out / "run.ckpt"), "--checkpoint-every", "0", "--keep-all", *extra]


def _alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _run_until(cmd, ck, at, sig, env, watch=None):
    """Start `cmd`, send `sig` once its checkpoint reaches index `at`; returns (returncode, output, next).
    `watch`: a list that receives the PIDs of the command's child processes just before the signal."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    sent = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if watch is not None:
            watch[:] = _children(proc.pid)
        try:
            state = json.loads(ck.read_text())
        except (OSError, ValueError):
            state = None
        if state and int(state["next"]) >= at:
            proc.send_signal(sig)
            sent = int(state["next"])
            break
        time.sleep(0.02)
    out = proc.communicate(timeout=120)[0].decode()
    assert sent is not None, out[-2000:]
    return proc.returncode, out, sent


def test_sigkill_and_resume(tmp_path):
    """Ctrl-C stops cleanly and leaves the checkpoint; kill -9 in the middle of the resumed run;
    the same command then resumes once more and ends with the same best mapping as an
    uninterrupted run."""
    env = SUB_ENV
    workers = []
    full = full_run("null")  # compiles the step the subprocesses load from the shared cache
    ck = tmp_path / "run.ckpt"
    rc, out, at = _run_until(_map_cmd(tmp_path), ck, 20 * CHUNK, signal.SIGINT, env)
    assert rc == 130 and "interrupted: checkpoint left" in out, out[-2000:]
    first = int(json.loads(ck.read_text())["next"])
    assert first >= at
    # the resumed run on two worker processes: killing it leaves no worker behind
    rc, out, at = _run_until(_map_cmd(tmp_path, ["--workers", "2"]), ck, first + 40 * CHUNK, signal.SIGKILL, env,
                             watch=workers)
    assert rc == -signal.SIGKILL and "resuming from checkpoint" in out
    assert len(workers) == 2
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{w}") and _alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{w}") and _alive(w) for w in workers)
    state = json.loads(ck.read_text())  # the checkpoint survived the kill intact
    assert first < int(state["next"]) < 263_360
    out = subprocess.run(_map_cmd(tmp_path), capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming from checkpoint" in out.stdout
    assert not ck.exists()
    assert f"best (mapspace index {full.best_index})" in out.stdout
    js = json.loads((tmp_path / "best.json").read_text())
    assert abs(js["energy_pJ"] - full.best_values[1]) < 1e-6 and js["cycles"] == full.best_values[0]


def test_map_command_size_and_outputs(tmp_path):
    from jaxloop.cli import main

    env = SUB_ENV
    out = subprocess.run([sys.executable, "-m", "jaxloop.commands.map", *map(str, files("null")), "--size"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "mapspace size: 263,360" in out.stdout and "2,177,280" in out.stdout
    # --json is exactly `jaxloop model --json` of the --map-out mapping
    d = TL05["freebypass"]
    assert main(["map", *map(str, files("freebypass")), "--ert", str(d / "ERT.yaml"), "--no-progress",
                 "--json", str(tmp_path / "m.json"), "--map-out", str(tmp_path / "m.yaml"),
                 "--out", str(tmp_path / "r.h5"), "--top", "5"]) == 0
    assert main(["model", str(d / "input.yaml"), str(tmp_path / "m.yaml"), "--ert", str(d / "ERT.yaml"),
                 "--json", str(tmp_path / "model.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads((tmp_path / "model.json").read_text())
    # --links searches with link transfers in the kernel; tl05 has no mesh, so nothing changes
    assert main(["map", *map(str, files("freebypass")), "--ert", str(d / "ERT.yaml"), "--no-progress", "--links",
                 "--json", str(tmp_path / "l.json")]) == 0
    assert json.loads((tmp_path / "l.json").read_text()) == json.loads((tmp_path / "m.json").read_text())
    import xarray as xr

    ds = xr.load_dataset(tmp_path / "r.h5", engine="h5netcdf")
    assert ds.sizes["mapping"] == 5 and (ds.status.values == 0).all()
    assert ds.attrs["search_algorithm"] == "exhaustive" and int(ds.attrs["search_evaluated"]) == 64
    assert float(ds.energy.values[0]) == pytest.approx(json.loads((tmp_path / "m.json").read_text())["energy_pJ"])


def test_utilization_constraint_flags_mappings():
    """type: utilization (min parallelism) is checked per mapping and counted as invalid."""
    from jaxloop.constraints import parse_constraints
    from jaxloop.spec import load_spec

    d = TIMELOOP_REF / "ed-simple_weight_stationary"
    spec = load_spec(d / "input.yaml", need_mapping=False)
    c = parse_constraints(spec, extra_sections=[("test", {"targets": [{"type": "utilization", "min": 0.5,
                                                                        "target": spec.arch.names[0]}]})])
    assert c.min_utilization == 0.5
    ms = Mapspace(spec, c)
    static, karr = compile_spec(spec, load_tables(d / "ERT.yaml", d / "ART.yaml"))
    ev = Evaluator(ms, static, karr, Objective.parse(spec, "energy"))
    b = ms.decode(np.random.default_rng(0).integers(0, ms.size, 64))
    fake = type("S", (), {"status": np.zeros(64, np.int64)})
    st = np.asarray(ev._status(b, fake))
    used = np.prod((np.asarray(b.spatial_x) * np.asarray(b.spatial_y)).reshape(64, -1), axis=1) / 256
    assert ((st >> 16 & 1) == (used < 0.5)).all() and (used < 0.5).any()


# ------------------------------------------------------------------------------ random, hybrid

def test_random_and_hybrid_find_the_optimum_region():
    spec, ms, static, karr, obj, _ = setup("null")
    best = full_run("null").best_values
    ev = Evaluator(ms, static, karr, obj, topk=10, chunk=1024)  # one compiled step per kind, shared
    r = random_search(ms, static, karr, obj, budget=8 * 1024, progress=False, seed=1, evaluator=ev)
    assert r.reduction.evaluated == 8 * 1024 and r.best_values is not None
    assert r.best_values[1] <= 1.5 * best[1]
    assert ms.encode(r.best_batch.mapping(0)) == r.best_index
    rp = random_pruned(ms, static, karr, obj, budget=8 * 1024, progress=False, seed=2, evaluator=ev)
    assert rp.best_values is not None and rp.best_values[1] <= 1.5 * best[1]
    h = hybrid(ms, static, karr, obj, budget=40 * 1024, progress=False, seed=3, evaluator=ev)
    assert h.best_values is not None and h.best_values[1] <= 1.02 * best[1]
    assert ms.encode(h.best_batch.mapping(0)) >= 0  # the hybrid's best lies in the mapspace
    # limits are checked before every generation: an exhausted time limit stops after the first population
    t = hybrid(ms, static, karr, obj, time_limit=0, progress=False, seed=4, evaluator=ev)
    assert t.stop_reason == "time limit" and t.reduction.evaluated == ev.chunk
