"""Exhaustive-search steps on worker processes, one per CPU core.

One process with one host device per core runs the mapper step at ~1.3x a single core on two
cores: XLA's CPU runtime shares one thread pool between the devices, and its thunk executor and
intra-op splitting of large fusions compete for it. One process per core, each with one device
and pinned to its core (so XLA compiles it without intra-op splitting), runs at ~1.9x. `Workers`
has the interface `exhaustive` uses of an `Evaluator` (`chunk`, `step`, `topk`, `keep_rows`,
`width`, `pieces`), so results, checkpoints and their order are the same either way: a chunk is
cut into the same pieces, piece i goes to worker i, and pieces are merged in index order.

A worker is `python -m jaxloop.workers CORE`, fed pickled tasks on stdin and answering pickled
reductions on stdout (a fresh interpreter: the caller's main module is not re-imported, as
multiprocessing's spawn would). Workers ignore Ctrl-C (the parent drains what is in flight and
stops) and exit when their stdin closes, which is also what happens when the parent is killed.
"""

import os
import pickle
import signal
import subprocess
import sys

import jax
import numpy as np


class Channel:
    """Length-prefixed pickles over a pair of file descriptors (a pipe each way)."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd, self.buf = rfd, wfd, bytearray()

    def send(self, obj):
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            view = view[os.write(self.wfd, view):]

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = os.read(self.rfd, max(1 << 16, n - len(self.buf)))
            if not chunk:
                raise EOFError
            self.buf += chunk

    def recv(self):
        self._fill(8)
        n = int.from_bytes(self.buf[:8], "little")
        self._fill(8 + n)
        obj = pickle.loads(self.buf[8:8 + n])
        del self.buf[:8 + n]
        return obj

    def waiting(self):
        """Whether a message (or part of one) can be read without blocking."""
        import select

        return bool(self.buf) or bool(select.select([self.rfd], [], [], 0)[0])


def usable_cores():
    """The cores this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def wanted(workers, n_mappings, min_mappings):
    """How many worker processes to use: `workers` if given (0 or 1: none), else one per core
    when the CPU backend runs the search on several cores and there are at least `min_mappings`
    to evaluate (starting a worker costs several seconds: importing JAX, compiling the step)."""
    if workers is not None:
        return int(workers) if int(workers) > 1 else 0
    cores = len(usable_cores())
    if jax.default_backend() != "cpu" or cores < 2 or n_mappings < min_mappings:
        return 0
    return cores


class Workers:
    """`n` worker processes running `evaluator`'s exhaustive step, a piece of `evaluator.chunk / n`
    indices at a time. Use as a context manager, or call close()."""

    def __init__(self, evaluator, n):
        ev = evaluator
        if ev.chunk % n:
            raise ValueError(f"chunk {ev.chunk} does not split into {n} equal pieces")
        self.chunk, self.topk, self.keep_rows = ev.chunk, ev.topk, ev.keep_rows
        self.step, self.width = ev.chunk // n, n
        cores = usable_cores()
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # workers import this jaxloop
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, PYTHONPATH=path,
                   XLA_FLAGS=" ".join(flags + ["--xla_force_host_platform_device_count=1"]))
        self.procs, self.chans = [], []
        try:
            for i in range(n):
                p = subprocess.Popen([sys.executable, "-m", "jaxloop.workers", str(cores[i % len(cores)])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                self.procs.append(p)
                self.chans.append(Channel(p.stdout.fileno(), p.stdin.fileno()))
            setup = (ev.ms, ev.static, jax.tree_util.tree_map(np.asarray, ev.karr), ev.obj, ev.topk, self.step,
                     ev.keep_rows)
            for i in range(n):
                self._put(i, setup)
            for i in range(n):  # each worker compiles its step, then says so
                self._get(i)
        except BaseException:
            self.close()
            raise

    def _put(self, i, obj):
        self.chans[i].send(obj)

    def _get(self, i):
        try:
            kind, value = self.chans[i].recv()
        except EOFError:
            raise RuntimeError(f"mapper worker {i} exited (code {self.procs[i].wait()}); see its messages above") \
                from None
        if kind == "error":
            raise RuntimeError(f"mapper worker {i} failed:\n{value}")
        return value

    def pieces(self, start, end):
        """Indices [start, start + chunk) below `end`, one piece per worker: [(piece start, fetch)],
        fetch() -> the piece's reductions as numpy (top-k rows chosen)."""
        out = []
        for i in range(self.width):
            s = start + i * self.step
            if i and s >= end:
                break
            self._put(i, (s, end))
            out.append((s, lambda i=i: self._get(i)))
        return out

    def close(self):
        for p in self.procs:
            try:
                p.stdin.close()  # the worker's signal to finish
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _reduced(out, topk):
    """A step's reductions as numpy, top-k rows chosen; the per-row values stay here."""
    from jaxloop.search import _host

    out = _host(out, topk)
    del out["vals"]
    return out


def main(core):
    """A worker: pin to `core`, build the step, then run pieces in order until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass
    chan = Channel(sys.stdin.fileno(), os.dup(sys.stdout.fileno()))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the stream

    def put(kind, value):
        chan.send((kind, value))

    try:
        import jax.numpy as jnp

        from jaxloop.search import Evaluator

        ms, static, karr, obj, topk, step, keep_rows = chan.recv()
        ev = Evaluator(ms, static, karr, obj, topk=topk, chunk=step, keep_rows=keep_rows)
        arrays = ev._arrays[0]
        jax.block_until_ready(ev._range(arrays, jnp.int64(0), jnp.int64(ms.size)))  # compile
        put("ready", None)
        in_flight = None  # a step runs while the previous one is reduced and sent
        while True:
            try:
                task = chan.recv()
            except EOFError:
                break
            nxt = ev._range(arrays, jnp.int64(task[0]), jnp.int64(task[1]))
            if in_flight is not None:
                put("ok", _reduced(in_flight, topk))
            in_flight = nxt
            if not chan.waiting():
                put("ok", _reduced(in_flight, topk))
                in_flight = None
        if in_flight is not None:
            put("ok", _reduced(in_flight, topk))
    except BrokenPipeError:  # the parent is gone
        pass
    except BaseException:
        import traceback

        try:
            put("error", traceback.format_exc())
        except BrokenPipeError:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]))
