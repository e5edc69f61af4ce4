"""Search strategies over a Mapspace: exhaustive (resumable), random, random-pruned, hybrid.

    ms = Mapspace(spec, constraints)
    static, karr = compile_spec(spec, table)
    obj = Objective.parse(spec, ["delay", "energy"])         # Timeloop's optimization_metrics
    res = exhaustive(ms, static, karr, obj, checkpoint="out.ckpt")
    res.best_index, res.best_values, res.top_index

Every strategy streams fixed-size chunks through one jitted step: decode -> evaluate -> reduce
on device (best by Timeloop's rule, top-k, histograms of energy and cycles, invalid counts per
status bit); only the reductions come back to the host.

Objectives (Timeloop's `optimization_metrics`): energy (pJ), delay (cycles), edp (J x cycles),
last_level_accesses, accesses-<level>, ordered_accesses (accesses of every level, outermost
first). A list is lexicographic with Timeloop's 0.1 % tolerance: a candidate beats the incumbent
if it improves the first metric by more than 0.1 %; within tolerance the next metric decides,
and on the last one any improvement wins. "0.5*energy+2*delay" (or a dict) is a weighted sum.
Within a chunk the winner is found by the same rule applied as a filter (keep rows within
0.1 % of the best first metric, then minimise the next, ...); the top-k list is ordered
exactly lexicographically (no tolerance).
"""

import hashlib
import json
import math
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.errors import SpecError
from jaxloop.mapspace import MappingBatch, prime_factors
from jaxloop.model.evaluate import evaluate
from jaxloop.model.status import FLAG_MEANINGS
from jaxloop.workers import Workers
from jaxloop.workers import wanted as wanted_workers

TOLERANCE = 1e-3
UTILIZATION_BIT = 16  # search-level status bit: below the constraints' min utilization/parallelism
STATUS_BITS = 17
BIT_NAMES = tuple(FLAG_MEANINGS) + ("",) * (UTILIZATION_BIT - len(FLAG_MEANINGS)) + ("utilization_constraint",)
E_RANGE = (-3.0, 21.0)  # log10(pJ) histogram range
C_RANGE = (0.0, 20.0)  # log10(cycles)
BINS_PER_DECADE = 20
CHECKPOINT_VERSION = 1
IN_FLIGHT = 4  # exhaustive pieces in flight per device or worker: pieces merge in index order, so a
# deeper queue keeps one worker busy while the merge waits on the other (2: ~15% slower on workers)
WORKERS_MIN = 1 << 24  # exhaustive runs this long (~20 s on two cores) start worker processes (~9 s to start)
ALGORITHMS = ("exhaustive", "random", "random-pruned", "hybrid")
_ALIASES = {"linear_pruned": "exhaustive", "linear-pruned": "exhaustive", "exhaustive": "exhaustive",
            "random": "random", "random_pruned": "random-pruned", "random-pruned": "random-pruned",
            "hybrid": "hybrid", "genetic": "hybrid"}


# ====================================================================================== objective

@dataclass
class Objective:
    """Metrics to minimise: lexicographic (Timeloop) or a weighted sum."""

    names: tuple  # metric names (for a weighted objective: its terms)
    weights: tuple = None  # None: lexicographic; else one weight per name
    levels: tuple = ()  # level names, for accesses-<level>
    text: str = ""

    @property
    def lexicographic(self):
        return self.weights is None

    @property
    def M(self):
        """Number of compared values per mapping."""
        return len(self.names) if self.lexicographic else 1

    @property
    def columns(self):
        return list(self.names) if self.lexicographic else [self.text]

    @classmethod
    def parse(cls, spec, obj):
        """'edp' | 'delay,energy' | ['delay', 'energy'] | '0.5*energy+delay' | {'energy': 1, 'delay': 2}."""
        levels = tuple(spec.arch.names)
        if obj is None:
            obj = ["edp"]
        if isinstance(obj, dict):
            names, weights = list(obj.keys()), [float(w) for w in obj.values()]
            return cls._check(tuple(names), tuple(weights), levels, " + ".join(f"{w:g}*{n}" for n, w in obj.items()))
        if isinstance(obj, str):
            s = obj.strip()
            if "*" in s or "+" in s:
                names, weights = [], []
                for term in re.split(r"\s*\+\s*", s):
                    m = re.fullmatch(r"(?:([0-9.eE+-]+)\s*\*\s*)?([A-Za-z_][\w-]*)", term.strip())
                    if not m:
                        raise SpecError(f"objective {obj!r}: cannot read term {term!r} (expected W*metric)")
                    weights.append(float(m[1]) if m[1] else 1.0)
                    names.append(m[2])
                return cls._check(tuple(names), tuple(weights), levels, s)
            obj = [t for t in re.split(r"[,\s]+", s) if t]
        names = []
        for n in obj:
            if n == "ordered_accesses":
                names += [f"accesses-{lv}" for lv in reversed(levels)]
            else:
                names.append(str(n))
        return cls._check(tuple(names), None, levels, ",".join(map(str, obj)))

    @classmethod
    def _check(cls, names, weights, levels, text):
        for n in names:
            if n in ("energy", "delay", "cycles", "edp", "last_level_accesses"):
                continue
            if n.startswith("accesses-") and n[len("accesses-"):] in levels:
                continue
            raise SpecError(f"unknown objective metric {n!r}: expected energy, delay, edp, last_level_accesses, "
                            f"ordered_accesses or accesses-<level> with a level in {list(levels)}")
        if not names:
            raise SpecError("empty objective")
        return cls(names, weights, levels, text)

    def metric(self, name, stats):
        if name == "energy":
            return stats.energy
        if name in ("delay", "cycles"):
            return stats.cycles.astype(jnp.float64)
        if name == "edp":
            return stats.energy * 1e-12 * stats.cycles
        if name == "last_level_accesses":
            return stats.last_level_accesses
        lv = self.levels.index(name[len("accesses-"):])
        acc = (stats.reads + stats.fills + stats.updates)[:, lv].sum(axis=-1)
        return stats.instances[:, lv] * acc

    def values(self, stats):
        """[B, M] values to minimise (traceable)."""
        cols = [self.metric(n, stats).astype(jnp.float64) for n in self.names]
        if self.lexicographic:
            return jnp.stack(cols, axis=1)
        return sum(w * c for w, c in zip(self.weights, cols))[:, None]

    def better(self, cand, inc):
        """Timeloop's comparison (host): is value vector `cand` better than `inc`?"""
        if inc is None:
            return cand is not None
        if cand is None:
            return False
        if not self.lexicographic:
            return cand[0] < inc[0]
        rel = 0.0
        for c, i in zip(cand, inc):
            rel = (i - c) / i if i != 0 else (0.0 if c == 0 else -math.copysign(1.0, c))
            if abs(rel) > TOLERANCE:
                return rel > 0
        return rel > 0


# ====================================================================================== settings

@dataclass
class MapperSettings:
    """Timeloop mapper YAML (`mapper:` section) as jaxloop reads it."""

    algorithm: str = None
    metrics: list = None
    victory_condition: int = None
    timeout: int = None
    search_size: int = None
    max_permutations_per_if_visit: int = 16
    warnings: list = field(default_factory=list)

    @classmethod
    def from_doc(cls, doc):
        m = (doc or {}).get("mapper") or {}
        s = cls()
        if not isinstance(m, dict):
            return s
        alg = m.get("algorithm")
        if alg is not None:
            if str(alg) not in _ALIASES:
                raise SpecError(f"mapper.algorithm: unknown algorithm {alg!r} (jaxloop knows {sorted(_ALIASES)})")
            s.algorithm = _ALIASES[str(alg)]
        s.metrics = m.get("optimization_metrics", m.get("optimization_metric"))
        for key in ("victory_condition", "timeout", "search_size", "max_permutations_per_if_visit"):
            if m.get(key) is not None:
                setattr(s, key, int(m[key]))
        for key in m:
            if key not in ("version", "algorithm", "optimization_metrics", "optimization_metric", "victory_condition",
                           "timeout", "search_size", "max_permutations_per_if_visit", "num_threads", "live_status",
                           "diagnostics", "log_stats", "log_suboptimal", "sync_interval", "out_prefix",
                           "filter_revisits", "penalize_consecutive_bypass_fails", "log_all", "log_oaves",
                           "log_oaves_mappings", "max_temporal_loops_in_a_mapping"):
                s.warnings.append(f"mapper.{key} is not used by jaxloop")
        return s


# ====================================================================================== reductions

@dataclass
class Reduction:
    """Everything the search keeps (host side): best, top-k, histograms, counts."""

    M: int
    topk: int
    best_values: list = None  # [M]
    best_id: object = None  # flat index (int) or genome row (tuple of arrays)
    top_values: np.ndarray = None  # [n, M]
    top_ids: list = field(default_factory=list)
    hist_energy: np.ndarray = None
    hist_cycles: np.ndarray = None
    invalid_bits: np.ndarray = None
    evaluated: int = 0
    valid: int = 0
    history: list = field(default_factory=list)  # (seconds since t0, evaluated, best values) per improvement
    t0: float = field(default_factory=time.time)

    def __post_init__(self):
        if self.top_values is None:
            self.top_values = np.zeros((0, self.M))
        if self.hist_energy is None:
            self.hist_energy = np.zeros(_nbins(E_RANGE), np.int64)
            self.hist_cycles = np.zeros(_nbins(C_RANGE), np.int64)
            self.invalid_bits = np.zeros(STATUS_BITS, np.int64)

    def merge(self, obj, out, ids_of):
        """Merge one chunk's device reductions (as numpy). ids_of(kind, rows) -> ids."""
        self.evaluated += int(out["n"])
        self.valid += int(out["n_valid"])
        self.hist_energy += out["hist_e"]
        self.hist_cycles += out["hist_c"]
        self.invalid_bits += out["bits"]
        improved = False
        if out["best_ok"]:
            cand = [float(x) for x in out["best_vals"]]
            if obj.better(cand, self.best_values):
                self.best_values = cand
                self.best_id = ids_of("best", None)
                improved = True
                self.history.append((time.time() - self.t0, self.evaluated, cand))
        ok = np.nonzero(out["top_ok"])[0]
        if len(ok):
            n_old = len(self.top_ids)
            vals = np.concatenate([self.top_values, out["top_vals"][ok]])
            order = np.lexsort(tuple(vals[:, j] for j in reversed(range(self.M))))[:self.topk]
            new = [int(i) - n_old for i in order if i >= n_old]  # ids only for rows that make the list
            new_ids = dict(zip(new, ids_of("top", ok[new]) if new else []))
            self.top_values = vals[order]
            self.top_ids = [self.top_ids[i] if i < n_old else new_ids[int(i) - n_old] for i in order]
        return improved

    def to_json(self):
        def enc(i):
            return str(i) if isinstance(i, int) else None
        return {"M": self.M, "topk": self.topk, "best_values": self.best_values, "best_id": enc(self.best_id),
                "top_values": self.top_values.tolist(), "top_ids": [enc(i) for i in self.top_ids],
                "hist_energy": self.hist_energy.tolist(), "hist_cycles": self.hist_cycles.tolist(),
                "invalid_bits": self.invalid_bits.tolist(), "evaluated": self.evaluated, "valid": self.valid}

    @classmethod
    def from_json(cls, d):
        r = cls(d["M"], d["topk"])
        r.best_values = d["best_values"]
        r.best_id = int(d["best_id"]) if d["best_id"] is not None else None
        r.top_values = np.array(d["top_values"], np.float64).reshape(-1, d["M"])
        r.top_ids = [int(i) for i in d["top_ids"]]
        r.hist_energy = np.array(d["hist_energy"], np.int64)
        r.hist_cycles = np.array(d["hist_cycles"], np.int64)
        r.invalid_bits = np.array(d["invalid_bits"], np.int64)
        r.evaluated, r.valid = int(d["evaluated"]), int(d["valid"])
        return r


def _nbins(rng):
    return int(round((rng[1] - rng[0]) * BINS_PER_DECADE)) + 2  # + underflow, overflow


def histogram_edges(kind="energy"):
    """Bin edges (linear units) of the streaming histograms; first/last bins are under/overflow."""
    lo, hi = E_RANGE if kind == "energy" else C_RANGE
    inner = 10.0 ** np.linspace(lo, hi, _nbins((lo, hi)) - 1)
    return np.concatenate([[0.0], inner, [np.inf]])


@dataclass
class SearchResult:
    algorithm: str
    objective: Objective
    reduction: Reduction
    size: int
    elapsed: float
    interrupted: bool = False
    complete: bool = False
    best_batch: MappingBatch = None  # 1 row, numpy
    top_batch: MappingBatch = None  # top-k rows, numpy
    all_rows: dict = None  # --keep-all: index/energy/cycles/status/values of every evaluated mapping
    stop_reason: str = ""

    encoded: dict = None  # flat indices of genome results (when the mapspace has a flat index)

    @property
    def best_index(self):
        b = self.reduction.best_id
        if isinstance(b, int):
            return b
        return (self.encoded or {}).get("best")

    @property
    def best_values(self):
        return self.reduction.best_values

    @property
    def top_index(self):
        enc = (self.encoded or {}).get("top") or [None] * len(self.reduction.top_ids)
        return [i if isinstance(i, int) else e for i, e in zip(self.reduction.top_ids, enc)]

    def summary(self):
        r = self.reduction
        out = {"algorithm": self.algorithm, "objective": self.objective.text, "mapspace_size": str(self.size),
               "evaluated": r.evaluated, "valid": r.valid, "elapsed_s": round(self.elapsed, 3),
               "mappings_per_s": r.evaluated / self.elapsed if self.elapsed > 0 else None,
               "complete": self.complete, "interrupted": self.interrupted, "stop_reason": self.stop_reason,
               "best_index": str(self.best_index) if self.best_index is not None else None,
               "best_values": dict(zip(self.objective.columns, r.best_values)) if r.best_values else None,
               "invalid_by_reason": {BIT_NAMES[b]: int(c) for b, c in enumerate(r.invalid_bits) if BIT_NAMES[b]}}
        return out


# ====================================================================================== the step

class Evaluator:
    """Jitted decode -> evaluate -> reduce for one (mapspace, kernel, objective)."""

    def __init__(self, ms, static, karr, objective, topk=10, chunk=1 << 14, keep_rows=False):
        self.ms, self.static, self.obj = ms, static, objective
        self.karr = jax.tree_util.tree_map(jnp.asarray, karr)
        self.topk, self.chunk, self.keep_rows = int(topk), int(chunk), keep_rows
        c = ms.constraints
        self.min_util = c.min_utilization
        self.total_fanout = float(np.prod([fx * fy for fx, fy in ms.fanout]))
        # Exhaustive chunks run as one independent call per local device (every CPU core, or the
        # GPUs) on consecutive pieces, dispatched asynchronously. No step is sharded: XLA's CPU
        # collectives can block every thread of the pool and abort the process (rendezvous timeout).
        devices = jax.local_devices()
        self.devices = devices if len(devices) > 1 and self.chunk % len(devices) == 0 else devices[:1]
        self.step = self.chunk // len(self.devices)  # indices per device call of range()
        self._arrays = [jax.device_put(ms.arrays, d) for d in self.devices]
        self._range = jax.jit(self._step_range)
        self._idx = jax.jit(self._step_indices)
        self._gen = jax.jit(self._step_genome)

    # -- pieces (traceable)
    def _status(self, batch, stats):
        st = stats.status.astype(jnp.int64)
        if self.min_util is not None:
            used = jnp.prod((batch.spatial_x * batch.spatial_y).reshape(batch.temporal.shape[0], -1).astype(
                jnp.float64), axis=1)
            st = st | ((used / self.total_fanout < self.min_util - 1e-12).astype(jnp.int64) << UTILIZATION_BIT)
        return st

    def penalty(self, batch, stats):
        """How far an invalid mapping is from valid (0 when valid): log-excess of capacity/fanout."""
        used = jnp.where(batch.keep, stats.tile, 0.0).sum(axis=2)
        size = self.karr["size"][None, :]
        cap = jnp.where(jnp.isinf(size), 0.0, jnp.maximum(0.0, jnp.log(jnp.maximum(used, 1.0) / size)))
        px = jnp.prod(batch.spatial_x, axis=2).astype(jnp.float64)
        py = jnp.prod(batch.spatial_y, axis=2).astype(jnp.float64)
        fx = self.karr["fanout_x"][None, :].astype(jnp.float64)
        fy = self.karr["fanout_y"][None, :].astype(jnp.float64)
        fan = jnp.maximum(0.0, jnp.log(px / fx)) + jnp.maximum(0.0, jnp.log(py / fy))
        return cap.sum(axis=1) + fan.sum(axis=1)

    def _reduce(self, batch, stats, mask):
        st = self._status(batch, stats)
        vals = self.obj.values(stats)
        M = vals.shape[1]
        valid = mask & (st == 0)
        # best by Timeloop's rule, as a filter
        sel = valid
        for j in range(M):
            v = jnp.where(sel, vals[:, j], jnp.inf)
            m = jnp.min(v)
            if j < M - 1 and self.obj.lexicographic:
                sel = sel & (vals[:, j] <= m + TOLERANCE * jnp.abs(m))
        best = jnp.argmin(jnp.where(sel, vals[:, M - 1], jnp.inf))
        e_bin = self._bin(stats.energy, E_RANGE)
        c_bin = self._bin(stats.cycles.astype(jnp.float64), C_RANGE)
        out = {
            "n": jnp.sum(mask), "n_valid": jnp.sum(valid),
            "best_ok": valid[best], "best_vals": vals[best], "best_pos": best,
            "vals": jnp.where(valid[:, None], vals, jnp.inf),  # top-k is selected on the host (cheaper)
            "hist_e": jnp.zeros(_nbins(E_RANGE), jnp.int64).at[e_bin].add(valid.astype(jnp.int64)),
            "hist_c": jnp.zeros(_nbins(C_RANGE), jnp.int64).at[c_bin].add(valid.astype(jnp.int64)),
            "bits": jnp.sum(((st[:, None] >> jnp.arange(STATUS_BITS)[None, :]) & 1) * mask[:, None], axis=0),
        }
        if self.keep_rows:
            out["rows"] = {"energy": stats.energy, "cycles": stats.cycles, "status": st, "values": vals}
        return out, st

    @staticmethod
    def _bin(x, rng):
        lx = jnp.log10(jnp.maximum(x, 1e-300))
        b = jnp.floor((lx - rng[0]) * BINS_PER_DECADE).astype(jnp.int32) + 1
        return jnp.clip(b, 0, _nbins(rng) - 1)

    def _run(self, batch, mask):
        stats = evaluate(self.static, self.karr, batch)
        return self._reduce(batch, stats, mask)

    # -- the three step kinds
    def _step_range(self, arrays, start, end):
        num = jnp.float64 if self.ms._exact_float else jnp.int64  # as the decode computes (mapspace.py)
        idx = start.astype(num) + jnp.arange(self.step, dtype=num)
        mask = idx < end.astype(num)
        idx = jnp.where(mask, idx, start)
        out, _ = self._run(self.ms._decode_flat(arrays, idx), mask)
        return out

    def _step_indices(self, arrays, idx):
        mask = jnp.ones(idx.shape[0], bool)
        out, _ = self._run(self.ms._decode_flat(arrays, idx), mask)
        out["best_idx"] = idx[out["best_pos"]]
        out["idx"] = idx
        return out

    def _step_genome(self, arrays, genome):
        batch = self.ms._decode_genome(arrays, genome)
        B = batch.temporal.shape[0]
        mask = jnp.ones(B, bool)
        stats = evaluate(self.static, self.karr, batch)
        out, st = self._reduce(batch, stats, mask)
        out["genome_best"] = tuple(g[out["best_pos"]] for g in genome)
        out["genome"] = genome
        out["fitness"] = self.obj.values(stats)
        out["status"] = st
        out["penalty"] = self.penalty(batch, stats)
        return out

    @property
    def width(self):
        """Pieces computed concurrently (one per device)."""
        return len(self.devices)

    def range(self, start, end):
        """Indices [start, start + chunk) below `end`: [(piece start, step output)], one piece of
        `step` indices per device, computed concurrently."""
        out = []
        for d, dev in enumerate(self.devices):
            s = start + d * self.step
            if d and s >= end:
                break
            out.append((s, self._range(self._arrays[d], jax.device_put(jnp.int64(s), dev),
                                       jax.device_put(jnp.int64(end), dev))))
        return out

    def pieces(self, start, end):
        """As range(), with fetch() in place of each output: the piece's reductions as numpy."""
        return [(s, lambda o=o: _host(o, self.topk)) for s, o in self.range(start, end)]

    def indices(self, idx):
        return self._idx(self.ms.arrays, idx)

    def genome(self, genome):
        return self._gen(self.ms.arrays, genome)


def top_rows(vals, k):
    """Row positions of the k lexicographically smallest finite rows of vals [B, M] (ties by position)."""
    B, M = vals.shape
    cand = np.nonzero(np.isfinite(vals[:, 0]))[0]
    sure = []
    for j in range(M):
        need = k - len(sure)
        if need <= 0 or len(cand) == 0:
            break
        if len(cand) <= need:
            break
        v = vals[cand, j]
        t = np.partition(v, need - 1)[need - 1]
        sure.extend(cand[v < t].tolist())
        cand = cand[v == t]
    rows = np.array(sure + cand.tolist(), np.int64)
    if len(rows) == 0:
        return rows
    order = np.lexsort((rows,) + tuple(vals[rows, j] for j in reversed(range(M))))
    return rows[order][:k]


def _host(out, k=None):
    out = jax.device_get(out)  # every leaf's copy started before any is waited for
    if k is not None and "vals" in out:
        top = top_rows(out["vals"], k)
        out["top_pos"] = top
        out["top_vals"] = out["vals"][top]
        out["top_ok"] = np.ones(len(top), bool)
    return out


# ====================================================================================== progress

class _Progress:
    def __init__(self, total, enabled, desc, obj, initial=0):
        self.bar = None
        self.obj = obj
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="map", unit_scale=True, desc=desc, dynamic_ncols=True,
                            smoothing=0.1, mininterval=0.5)

    def update(self, n, red):
        if self.bar is None:
            return
        frac = red.valid / red.evaluated if red.evaluated else 0.0
        best = "-" if red.best_values is None else ",".join(f"{v:.4g}" for v in red.best_values)
        self.bar.set_postfix_str(f"valid {100 * frac:.1f}% best[{','.join(self.obj.columns)}] {best}", refresh=False)
        self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ====================================================================================== checkpoints

def fingerprint(ms, objective, evaluator, algorithm):
    """What must match for a checkpoint to be resumed."""
    h = hashlib.sha256()
    h.update(json.dumps(ms.spec.doc, sort_keys=True, default=str).encode())
    h.update(repr((ms.size, [t.shape[0] for t in ms.tables], objective.names, objective.weights,
                   evaluator.chunk, evaluator.topk, evaluator.keep_rows, algorithm, ms.prune_fanout)).encode())
    return h.hexdigest()


def write_json_atomic(path, obj):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_rows_atomic(path, rows):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ====================================================================================== exhaustive

def exhaustive(ms, static, karr, objective, *, chunk=1 << 14, topk=10, keep_all=False, budget=None,
               time_limit=None, checkpoint=None, checkpoint_every=30.0, restart=False, progress=True,
               evaluator=None, workers=None):
    """Walk indices 0 .. size-1 (or the first `budget`) in fixed chunks. With `checkpoint`, the
    next index and the partial reductions are written atomically every `checkpoint_every` seconds
    and on Ctrl-C; rerunning with the same arguments resumes there and ends with the same result.

    `evaluator`: an Evaluator, or a jaxloop.workers.Workers running one. `workers`: worker
    processes (jaxloop.workers): by default one per core on CPUs for runs of at least
    WORKERS_MIN mappings; 0 runs in this process. The result does not depend on it."""
    if not ms.flat:
        raise SpecError(f"the mapspace has {ms.size:.3e} mappings: too many to enumerate (use random or hybrid)")
    ev = evaluator or Evaluator(ms, static, karr, objective, topk, chunk, keep_rows=keep_all)
    end = ms.size if budget is None else min(ms.size, int(budget))
    red = Reduction(objective.M, ev.topk)
    start, elapsed0 = 0, 0.0
    rows = {"index": [], "energy": [], "cycles": [], "status": [], "values": []} if keep_all else None
    fp = fingerprint(ms, objective, ev, "exhaustive")
    ck = Path(checkpoint) if checkpoint else None
    rows_dir = Path(str(ck) + ".rows") if ck else None  # --keep-all rows: one file per checkpoint, appended
    saved_parts, saved_rows = [], 0
    if ck and ck.exists() and not restart:
        try:
            state = json.loads(ck.read_text())
        except (OSError, ValueError):
            state = None
        if state and state.get("version") == CHECKPOINT_VERSION and state.get("fingerprint") == fp:
            start = int(state["next"])
            red = Reduction.from_json(state["reduction"])
            elapsed0 = float(state.get("elapsed", 0.0))
            if keep_all:
                for part in state.get("row_parts", []):
                    z = np.load(rows_dir / part)
                    for k in rows:
                        rows[k].append(z[k])
                saved_parts = list(state.get("row_parts", []))
                saved_rows = sum(len(r) for r in rows["index"])
            print(f"resuming from checkpoint {ck} at index {start:,} of {end:,}", flush=True)
        elif state:
            print(f"note: checkpoint {ck} is for a different run; starting over")
    t0 = time.time()  # elapsed time includes starting workers, as it includes compiling
    run = ev
    if not isinstance(ev, Workers):
        n = wanted_workers(workers, end - start, WORKERS_MIN)
        if n and ev.chunk % n == 0:
            if progress:
                print(f"starting {n} worker processes (one per core)", flush=True)
            try:
                run = Workers(ev, n)
            except Exception as e:  # noqa: BLE001  by default a failed start falls back to this process
                if workers is not None:
                    raise
                print(f"note: worker processes did not start ({str(e).splitlines()[0]}); searching in this "
                      "process", flush=True)
    bar = _Progress(end, progress, "exhaustive", objective, initial=start)
    last_ck = time.time()
    pending = []
    interrupted, reason = False, ""

    def save(next_index):
        nonlocal saved_rows
        if not ck:
            return
        if keep_all:
            flat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()}
            if len(flat["index"]) > saved_rows:
                rows_dir.mkdir(exist_ok=True)
                name = f"part-{next_index}.npz"
                _save_rows_atomic(rows_dir / name, {k: v[saved_rows:] for k, v in flat.items()})
                saved_parts.append(name)
                saved_rows = len(flat["index"])
            for k in rows:
                rows[k] = [flat[k]] if len(flat[k]) else []
        write_json_atomic(ck, {"version": CHECKPOINT_VERSION, "fingerprint": fp, "next": str(next_index),
                               "end": str(end), "elapsed": elapsed0 + time.time() - t0,
                               "reduction": red.to_json(), "row_parts": saved_parts})

    def finish(s, out):
        red.merge(objective, out, lambda kind, rows_: s + int(out["best_pos"]) if kind == "best"
                  else [s + int(p) for p in out["top_pos"][rows_]])
        if keep_all:
            n = int(out["n"])
            rows["index"].append(s + np.arange(n, dtype=np.int64))
            for k in ("energy", "cycles", "status", "values"):
                rows[k].append(np.asarray(out["rows"][k])[:n])
        bar.update(int(out["n"]), red)

    nxt = start
    with _StopFlag() as stop:
        try:
            s = start
            while s < end or pending:
                if s < end and len(pending) < IN_FLIGHT * run.width and not stop.requested:
                    pending.extend(run.pieces(s, end))  # one piece per device or worker
                    s += ev.chunk
                    continue
                if not pending:
                    break
                ps, fetch = pending.pop(0)
                finish(ps, fetch())
                nxt = min(ps + ev.step, end)
                now = time.time()
                if stop.requested:
                    interrupted, reason = True, "interrupted"
                    continue  # drain what is in flight (already computed), then stop
                if ck and now - last_ck >= checkpoint_every:
                    save(nxt)
                    last_ck = now
                if time_limit is not None and now - t0 >= time_limit:
                    reason = "time limit"
                    s = end  # no new chunks; drain the pending ones
        finally:
            bar.close()
            if run is not ev:
                run.close()
    complete = nxt >= ms.size
    if ck:
        if complete:
            if ck.exists():
                ck.unlink()
            if rows_dir.exists():
                for p in rows_dir.iterdir():
                    p.unlink()
                rows_dir.rmdir()
        else:
            save(nxt)
    res = SearchResult("exhaustive", objective, red, ms.size, elapsed0 + time.time() - t0, interrupted, complete,
                       stop_reason=reason or ("complete" if complete else f"budget ({end} mappings)"))
    if keep_all:
        res.all_rows = {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()}
    _attach_batches(ms, res)
    return res


class _StopFlag:
    """Ctrl-C / SIGTERM request a clean stop at the next chunk boundary (a second Ctrl-C aborts)."""

    def __init__(self):
        self.requested = False
        self.old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals stay as they are
                pass
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, h in self.old.items():
            signal.signal(sig, h)
        return False


def _attach_batches(ms, res):
    """Decode best and top-k (indices or genome rows) into numpy MappingBatches."""
    red = res.reduction

    def decode(ids):
        if not ids:
            return None
        if all(isinstance(i, int) for i in ids):
            b = ms.decode(np.array(ids, np.int64))
        else:
            g = tuple(jnp.stack([jnp.asarray(i[k]) for i in ids]) for k in range(3))
            b = ms.decode_genome(g)
        return MappingBatch(*(np.asarray(x) for x in b))

    if red.best_id is not None:
        res.best_batch = decode([red.best_id])
    res.top_batch = decode(red.top_ids)
    if ms.flat and (red.top_ids or red.best_id is not None) and not isinstance(red.best_id, int):
        res.encoded = {"best": ms.encode(res.best_batch.mapping(0)) if res.best_batch is not None else None,
                       "top": [ms.encode(res.top_batch.mapping(i)) for i in range(res.top_batch.size)]
                       if res.top_batch is not None else []}


# ====================================================================================== random search

@dataclass
class _Stopper:
    budget: int = None
    time_limit: float = None
    victory: int = None  # consecutive valid mappings without improvement
    timeout: int = None  # consecutive invalid mappings
    search_size: int = None  # valid mappings
    since_improve: int = 0
    invalid_run: int = 0
    t0: float = field(default_factory=time.time)

    def update(self, red, n, n_valid, improved):
        if improved:
            self.since_improve = 0
        else:
            self.since_improve += n_valid
        self.invalid_run = self.invalid_run + n if n_valid == 0 else 0

    def reason(self, red):
        if self.budget is not None and red.evaluated >= self.budget:
            return f"budget ({self.budget} mappings)"
        if self.time_limit is not None and time.time() - self.t0 >= self.time_limit:
            return "time limit"
        if self.search_size and red.valid >= self.search_size:
            return f"search_size ({self.search_size} valid mappings)"
        if self.victory and red.valid and self.since_improve >= self.victory:
            return f"victory_condition ({self.victory} valid mappings without improvement)"
        if self.timeout and self.invalid_run >= self.timeout:
            return f"timeout ({self.timeout} consecutive invalid mappings)"
        return ""


def _sampling_loop(ms, objective, ev, make_batch, stopper, progress, name, seed):
    """Shared loop of random and random-pruned: make_batch(key) -> ('idx', idx) or ('genome', g)."""
    red = Reduction(objective.M, ev.topk)
    key = jax.random.PRNGKey(seed)
    total = stopper.budget if stopper.budget is not None else (ms.size if ms.size < 10 ** 15 else None)
    bar = _Progress(total, progress, name, objective)
    interrupted, reason = False, ""
    t0 = time.time()
    stop = _StopFlag().__enter__()
    try:
        while not stop.requested:
            key, sub = jax.random.split(key)
            kind, data = make_batch(sub)
            out = _host(ev.indices(data) if kind == "idx" else ev.genome(data), ev.topk)
            if kind == "idx":
                ids = lambda k, r: int(out["best_idx"]) if k == "best" else \
                    [int(out["idx"][out["top_pos"][i]]) for i in r]  # noqa
            else:
                ids = lambda k, r: tuple(np.asarray(g) for g in out["genome_best"]) if k == "best" else \
                    [tuple(np.asarray(g[out["top_pos"][i]]) for g in out["genome"]) for i in r]  # noqa
            improved = red.merge(objective, out, ids)
            stopper.update(red, int(out["n"]), int(out["n_valid"]), improved)
            bar.update(int(out["n"]), red)
            reason = stopper.reason(red)
            if reason:
                break
        if stop.requested:
            interrupted, reason = True, "interrupted"
    except KeyboardInterrupt:
        interrupted, reason = True, "interrupted"
    finally:
        stop.__exit__()
        bar.close()
    res = SearchResult(name, objective, red, ms.size, time.time() - t0, interrupted, False, stop_reason=reason)
    _attach_batches(ms, res)
    return res


def random_search(ms, static, karr, objective, *, chunk=1 << 14, topk=10, budget=None, time_limit=None,
                  victory_condition=None, timeout=None, search_size=None, seed=0, progress=True, evaluator=None):
    """Uniform random mappings (uniform over the whole space when it has a flat index, else a
    uniform IF with uniform loop orders and bypass), evaluated in chunks."""
    ev = evaluator or Evaluator(ms, static, karr, objective, topk, chunk)
    if budget is None and time_limit is None and not victory_condition and not search_size:
        budget = 1_000_000
    stopper = _Stopper(budget, time_limit, victory_condition, timeout, search_size)

    def make(key):
        if ms.flat:
            return "idx", ms.random_indices(key, ev.chunk)
        return "genome", ms.random_genome(key, ev.chunk)
    return _sampling_loop(ms, objective, ev, make, stopper, progress, "random", seed)


def random_pruned(ms, static, karr, objective, *, chunk=1 << 14, topk=10, budget=None, time_limit=None,
                  victory_condition=None, timeout=None, search_size=None, perms_per_if=16, seed=0, progress=True,
                  evaluator=None):
    """Timeloop's random_pruned, batched: random IFs, each with `perms_per_if` random loop orders,
    each with every bypass choice (or random bypass choices when there are more than 64)."""
    ev = evaluator or Evaluator(ms, static, karr, objective, topk, chunk)
    if budget is None and time_limit is None and not victory_condition and not search_size:
        budget = 1_000_000
    stopper = _Stopper(budget, time_limit, victory_condition, timeout, search_size)
    nb = ms.nb if ms.nb <= 64 else 1
    per_if = max(1, perms_per_if) * nb
    n_if = max(1, ev.chunk // per_if)
    nfree = len(ms.free_keep)

    def make(key):
        k1, k2, k3 = jax.random.split(key, 3)
        F, _, bits = ms.random_genome(k1, n_if)
        B = ev.chunk
        rep = jnp.minimum(jnp.arange(B) // per_if, n_if - 1)
        F = F[rep]
        prio = jnp.argsort(jax.random.uniform(k2, (B, ms.L, ms.D)), axis=2)
        if nb > 1:
            code = jnp.arange(B) % nb
            bits = ((code[:, None] >> jnp.arange(nfree)[None, :]) & 1).astype(bool)
        else:
            bits = jax.random.bernoulli(k3, 0.5, (B, nfree))
        return "genome", (F, prio, bits)
    return _sampling_loop(ms, objective, ev, make, stopper, progress, "random-pruned", seed)


# ====================================================================================== hybrid (evolutionary)

class _Genetics:
    """Vectorized mutation and crossover of genomes (factors [B, D, S], priorities [B, L, D], bits)."""

    def __init__(self, ms):
        self.ms = ms
        D, S = ms.D, ms.S
        primes = [[p for p, _ in prime_factors(b)] or [1] for b in ms.bounds]
        P = max(len(p) for p in primes)
        self.primes = jnp.asarray(np.array([p + [1] * (P - len(p)) for p in primes], np.int64))
        self.nprimes = jnp.asarray(np.array([len(p) if ms.bounds[d] > 1 else 0 for d, p in enumerate(primes)]))
        lo, hi = ms.box
        self.lo, self.hi = jnp.asarray(lo), jnp.asarray(hi)
        self.mutable = np.array([d for d in range(D) if ms.tables[d].shape[0] > 1])
        self.pl = np.array(ms.pl, np.int64)
        self.S = S

    def mutate_factors(self, key, F):
        B, D, S = F.shape
        if len(self.mutable) == 0:
            return F
        k = jax.random.split(key, 5)
        d = jnp.asarray(self.mutable)[jax.random.randint(k[0], (B,), 0, len(self.mutable))]
        pi = jnp.floor(jax.random.uniform(k[1], (B,)) * jnp.maximum(self.nprimes[d], 1)).astype(jnp.int32)
        p = self.primes[d, pi]
        row = F[jnp.arange(B), d]  # [B, S]
        src_ok = (row % p[:, None] == 0) & (row > 1)
        src = jnp.argmax(jnp.where(src_ok, jax.random.uniform(k[2], (B, S)), -1.0), axis=1)
        dst = jax.random.randint(k[3], (B,), 0, S - 1)
        dst = jnp.where(dst >= src, dst + 1, dst)
        ar = jnp.arange(S)[None, :]
        new = jnp.where(ar == src[:, None], row // p[:, None], row)
        new = jnp.where(ar == dst[:, None], new * p[:, None], new)
        ok = src_ok.any(axis=1) & ((new >= self.lo[d]) & (new <= self.hi[d])).all(axis=1)
        new = jnp.where(ok[:, None], new, row)
        onehot = (jnp.arange(D)[None, :] == d[:, None])[:, :, None]
        return jnp.where(onehot, new[:, None, :], F)

    def mutate_order(self, key, prio):
        B, L, D = prio.shape
        if len(self.pl) == 0:
            return prio
        k = jax.random.split(key, 3)
        lv = jnp.asarray(self.pl)[jax.random.randint(k[0], (B,), 0, len(self.pl))]
        a = jax.random.randint(k[1], (B,), 0, D)
        b = jax.random.randint(k[2], (B,), 0, D)
        rows = prio[jnp.arange(B), lv]
        va, vb = rows[jnp.arange(B), a], rows[jnp.arange(B), b]
        rows = jnp.where(jnp.arange(D)[None, :] == a[:, None], vb[:, None], rows)
        rows = jnp.where(jnp.arange(D)[None, :] == b[:, None], va[:, None], rows)
        onehot = (jnp.arange(L)[None, :] == lv[:, None])[:, :, None]
        return jnp.where(onehot, rows[:, None, :], prio)

    def mutate_bits(self, key, bits):
        B, n = bits.shape
        if n == 0:
            return bits
        i = jax.random.randint(key, (B,), 0, n)
        return bits ^ (jnp.arange(n)[None, :] == i[:, None])

    def child(self, key, pa, pb, rate=1.0):
        """Uniform crossover of parents pa, pb (genome tuples), then 1+ mutations each."""
        Fa, Pa, Ba = pa
        Fb, Pb, Bb = pb
        B = Fa.shape[0]
        k = jax.random.split(key, 10)
        cross = jax.random.bernoulli(k[0], 0.5, (B, 1, 1))  # half the children are crossovers
        mdim = jax.random.bernoulli(k[1], 0.5, (B, Fa.shape[1], 1)) & cross
        F = jnp.where(mdim, Fb, Fa)
        mlev = jax.random.bernoulli(k[2], 0.5, (B, Pa.shape[1], 1)) & cross
        P = jnp.where(mlev, Pb, Pa)
        mbit = jax.random.bernoulli(k[3], 0.5, Ba.shape) & cross[:, :, 0]
        Bt = jnp.where(mbit, Bb, Ba)
        for i in range(3):  # up to three mutations of each kind, each with decreasing probability
            on = jax.random.bernoulli(k[4 + i], rate * 0.8 / (i + 1), (B,))
            F2 = self.mutate_factors(jax.random.fold_in(k[7], i), F)
            F = jnp.where(on[:, None, None], F2, F)
            on2 = jax.random.bernoulli(jax.random.fold_in(k[8], i), rate * 0.5 / (i + 1), (B,))
            P = jnp.where(on2[:, None, None], self.mutate_order(jax.random.fold_in(k[9], i), P), P)
        on3 = jax.random.bernoulli(jax.random.fold_in(k[8], 99), 0.3 * rate, (B,))
        Bt = jnp.where(on3[:, None], self.mutate_bits(jax.random.fold_in(k[9], 99), Bt), Bt)
        return F, P, Bt


def _order(inv, pen, vals, dup_thin=True):
    """Device: permutation sorting rows best first: valid before invalid (invalid by penalty),
    then the objective values lexicographically; exact duplicates beyond two copies go last."""
    keys = tuple(vals[:, j] for j in reversed(range(vals.shape[1]))) + (pen, inv)
    order = jnp.lexsort(keys)
    if not dup_thin:
        return order
    sv = jnp.concatenate([vals, pen[:, None]], axis=1)[order]
    dup = jnp.concatenate([jnp.zeros(2, bool), (sv[2:] == sv[:-2]).all(axis=1)])
    return order[jnp.argsort(dup, stable=True)]


class _HybridFns:
    """Jitted pieces of one generation (breed, survive), cached per Evaluator."""

    def __init__(self, ms, ev, immigrants):
        self.gen = _Genetics(ms)
        self.ms = ms
        self.n_imm = int(immigrants * ev.chunk)
        self.fitness = jax.jit(self._fitness)
        self.breed = jax.jit(self._breed)
        self.survive = jax.jit(self._survive)

    @staticmethod
    def _fitness(out):
        inv = out["status"] != 0
        pen = jnp.where(inv, out["penalty"] + ((out["status"] >> UTILIZATION_BIT) & 1), 0.0)
        return inv, pen, out["fitness"]

    def _breed(self, key, pop, fit):
        N = pop[0].shape[0]
        order = _order(*fit, dup_thin=False)
        rank = jnp.zeros(N, jnp.int32).at[order].set(jnp.arange(N, dtype=jnp.int32))
        ks, kc, ki = jax.random.split(key, 3)
        t = jax.random.randint(ks, (4, N), 0, N)
        pa = jnp.where(rank[t[0]] < rank[t[1]], t[0], t[1])
        pb = jnp.where(rank[t[2]] < rank[t[3]], t[2], t[3])
        kids = self.gen.child(kc, tuple(g[pa] for g in pop), tuple(g[pb] for g in pop))
        if self.n_imm:
            imm = self.ms.random_genome(ki, self.n_imm)
            kids = tuple(jnp.concatenate([i.astype(k.dtype), k[self.n_imm:]]) for k, i in zip(kids, imm))
        return kids

    @staticmethod
    def _survive(pop, fit, kids, kfit):
        N = pop[0].shape[0]
        both = tuple(jnp.concatenate([g, k.astype(g.dtype)]) for g, k in zip(pop, kids))
        f = tuple(jnp.concatenate([a, b]) for a, b in zip(fit, kfit))
        sel = _order(*f)[:N]
        return tuple(g[sel] for g in both), tuple(x[sel] for x in f)


def hybrid(ms, static, karr, objective, *, population=1 << 12, topk=10, budget=None, time_limit=None,
           patience=30, immigrants=0.1, search_size=None, seed=0, progress=True, evaluator=None, init=None):
    """Evolutionary search over whole populations of genomes: tournament selection, uniform
    crossover, factor moves (a prime factor moved between two slots of one dimension, within the
    constraint boxes), loop swaps at order-carrying levels, bypass flips, random immigrants,
    (mu + lambda) survival; a generation runs on device, only its reductions come back. Stops on
    budget, time, `patience` generations without a better best (0: never), or `search_size`
    valid mappings. `init` (a genome) seeds the population."""
    ev = evaluator or Evaluator(ms, static, karr, objective, topk, population)
    N = ev.chunk
    if budget is None and time_limit is None:
        budget = 2_000_000
    fns = getattr(ev, "_hybrid", None)
    if fns is None or fns.n_imm != int(immigrants * N):
        fns = ev._hybrid = _HybridFns(ms, ev, immigrants)
    red = Reduction(objective.M, ev.topk)
    key = jax.random.PRNGKey(seed)
    key, k0 = jax.random.split(key)
    pop = ms.random_genome(k0, N)
    if init is not None:
        n = min(N, init[0].shape[0])
        pop = tuple(p.at[:n].set(jnp.asarray(i[:n]).astype(p.dtype)) for p, i in zip(pop, init))
    bar = _Progress(budget, progress, "hybrid", objective)
    t0 = time.time()
    stale, reason, interrupted = 0, "", False

    def merge(out):
        small = {k: out[k] for k in ("n", "n_valid", "best_ok", "best_vals", "best_pos", "vals", "hist_e", "hist_c",
                                     "bits", "genome_best")}
        out_h = _host(small, ev.topk)

        def ids(kind, r):
            if kind == "best":
                return tuple(np.asarray(x) for x in out_h["genome_best"])
            g = [np.asarray(x) for x in out["genome"]]
            return [tuple(x[int(out_h["top_pos"][i])] for x in g) for i in r]
        improved = red.merge(objective, out_h, ids)
        bar.update(int(out_h["n"]), red)
        return improved

    stop = _StopFlag().__enter__()
    try:
        out = ev.genome(pop)
        fit = fns.fitness(out)
        merge(out)
        while True:  # the limits are checked before every generation, the first one included
            if budget is not None and red.evaluated >= budget:
                reason = f"budget ({budget} mappings)"
            elif time_limit is not None and time.time() - t0 >= time_limit:
                reason = "time limit"
            elif patience and stale >= patience:
                reason = f"{patience} generations without improvement"
            elif search_size and red.valid >= search_size:
                reason = f"search_size ({search_size} valid mappings)"
            elif stop.requested:
                interrupted, reason = True, "interrupted"
            if reason:
                break
            key, kb = jax.random.split(key)
            kids = fns.breed(kb, pop, fit)
            kout = ev.genome(kids)
            kfit = fns.fitness(kout)
            pop, fit = fns.survive(pop, fit, kids, kfit)
            stale = 0 if merge(kout) else stale + 1
    except KeyboardInterrupt:
        interrupted, reason = True, "interrupted"
    finally:
        stop.__exit__()
        bar.close()
    res = SearchResult("hybrid", objective, red, ms.size, time.time() - t0, interrupted, False, stop_reason=reason)
    _attach_batches(ms, res)
    return res


def search(algorithm, ms, static, karr, objective, **kw):
    """Dispatch by name (exhaustive, random, random-pruned, hybrid)."""
    alg = _ALIASES.get(algorithm, algorithm)
    fn = {"exhaustive": exhaustive, "random": random_search, "random-pruned": random_pruned, "hybrid": hybrid}.get(alg)
    if fn is None:
        raise SpecError(f"unknown search {algorithm!r}: expected one of {ALGORITHMS}")
    return fn(ms, static, karr, objective, **kw)
