"""A NeuroSim that runs, for hwcomponents-neurosim's models (row drivers, memory cells, shift-add...).

The NeuroSim binary inside `hwcomponents-neurosim` wheels is linked against a newer glibc than
many Linux systems have. `neurosim_binary()` probes it; if it does not run, it compiles the C++
sources the wheel ships (DNN_NeuroSim_V1.3's NeuroSIM folder with the wheel's `drop_in`
replacements) into the jaxloop cache directory, once, under a file lock (about 35 s; nothing
is written to site-packages and no source is copied into jaxloop: NeuroSim is CC BY-NC 4.0).
`using_neurosim()` points hwcomponents-neurosim at that binary, sends its scratch files to the
jaxloop cache, and clears its in-process result cache, whose key leaves out the cell file
(different cells in one process would otherwise get the first cell's numbers).
`JAXLOOP_NEUROSIM=off` disables it; then NeuroSim-backed entries raise a SpecError that says
to give table values instead.
"""

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jaxloop.energy.cache import writable_dir

_state = {}
NEUROSIM_CLASSES = ("neurosim", "arrayrowdrivers", "arraycoldrivers", "arraycolumndrivers", "arrayadc",
                    "memorycell", "shiftadd", "addertree", "flipflop", "mux", "norgate", "nandgate", "notgate",
                    "maxpool")


def is_neurosim_class(cls):
    return str(cls).lower().replace("_", "").startswith(NEUROSIM_CLASSES)


def _package_dir():
    import hwcomponents_neurosim

    return Path(hwcomponents_neurosim.__file__).parent


def _runs(binary):
    """True if `binary` starts on this machine (NeuroSim exits with a usage error, not a loader error)."""
    try:
        p = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, cwd=binary.parent)
    except (OSError, subprocess.SubprocessError):
        return False
    return "GLIBC" not in p.stderr and "error while loading" not in p.stderr and p.returncode != 127


def _build(pkg, dest):
    if not shutil.which("g++"):
        return "no C++ compiler (g++) to rebuild it"
    src = pkg / "DNN_NeuroSim_V1.3" / "Inference_pytorch" / "NeuroSIM"
    if not src.is_dir():
        return f"the wheel has no NeuroSim sources at {src}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".build-"))
    try:
        for f in list(src.glob("*.cpp")) + list(src.glob("*.h")) + list((pkg / "drop_in").glob("*")):
            shutil.copy(f, work / f.name)  # drop_in files replace their originals
        cmd = ["g++", "-O2", "-w", "-fopenmp", *sorted(p.name for p in work.glob("*.cpp")), "-o", "main"]
        p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900)
        if p.returncode != 0 or not _runs(work / "main"):
            tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or ["?"]
            return f"rebuild failed ({tail[0][:200]})"
        dest.mkdir(parents=True, exist_ok=True)
        os.replace(work / "main", dest / "main")
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return f"rebuild failed ({e})"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def neurosim_binary():
    """Path of a runnable NeuroSim `main`, or None (the reason is in `unavailable_reason()`)."""
    if "bin" in _state:
        return _state["bin"]
    _state["bin"], _state["why"] = None, ""
    if os.environ.get("JAXLOOP_NEUROSIM", "auto").lower() in ("off", "0", "no", "false"):
        _state["why"] = "disabled by JAXLOOP_NEUROSIM=off"
        return None
    try:
        pkg = _package_dir()
    except ImportError:
        _state["why"] = "hwcomponents-neurosim is not installed"
        return None
    if (pkg / "NeuroSim" / "main").is_file() and _runs(pkg / "NeuroSim" / "main"):
        _state["bin"] = pkg / "NeuroSim" / "main"
        return _state["bin"]
    from importlib.metadata import version

    try:
        dest = writable_dir("neurosim") / version("hwcomponents-neurosim")
    except OSError as e:
        _state["why"] = str(e)
        return None
    if not ((dest / "main").is_file() and _runs(dest / "main")):
        with open(dest.parent / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not ((dest / "main").is_file() and _runs(dest / "main")):
                print(f"jaxloop: the NeuroSim binary in hwcomponents-neurosim does not run here; building it once "
                      f"from its sources into {dest} ...", file=sys.stderr)
                err = _build(pkg, dest)
                if err:
                    _state["why"] = err
                    return None
    _state["bin"] = dest / "main"
    return _state["bin"]


def unavailable_reason():
    return _state.get("why", "")


@contextlib.contextmanager
def using_neurosim(binary):
    """Point hwcomponents-neurosim at `binary` and a scratch folder in the jaxloop cache."""
    import hwcomponents_neurosim.main as nm
    import hwcomponents_neurosim.neurointerface as ni

    scratch = writable_dir("neurosim-io")
    saved = (ni.NEUROSIM_PATH, ni._clean_tmp_dir)
    ni.NEUROSIM_PATH = str(binary)
    ni._clean_tmp_dir = lambda: str(scratch)
    nm.CACHE.clear()
    try:
        yield
    finally:
        ni.NEUROSIM_PATH, ni._clean_tmp_dir = saved
        nm.CACHE.clear()


def cell_file(name):
    """A NeuroSim cell file: a path, or the name of one shipped with hwcomponents-neurosim."""
    p = Path(str(name)).expanduser()
    if p.is_file():
        return str(p)
    shipped = _package_dir() / "cells" / str(name)
    return str(shipped) if shipped.is_file() else str(name)


def reset():
    _state.clear()


def _model_class(cls):
    import inspect

    import hwcomponents_neurosim.main as nm

    want = str(cls).lower().replace("_", "")
    for _, obj in inspect.getmembers(nm, inspect.isclass):
        names = obj.__dict__.get("component_name")
        names = [names] if isinstance(names, str) else (names or [])
        if any(n.lower() == want for n in names):
            return obj
    return None


def estimate(cls, attrs, wanted, where):
    """{"energy": pJ of the first action of `wanted` the model has, "area": um^2, "action", "source"}
    of hwcomponents-neurosim class `cls`, cached on disk. Only the wanted action is called (some
    models' other actions fail)."""
    import inspect

    from jaxloop.energy import cache
    from jaxloop.energy.primitives import tech_node_m
    from jaxloop.errors import SpecError

    key = cache.make_key("neurosim", str(cls).lower(), attrs, list(wanted))
    hit = cache.get(key)
    if hit is not None:
        return hit
    model_cls = _model_class(cls)
    if model_cls is None:
        raise SpecError(f"{where}: {cls!r} is not a hwcomponents-neurosim model")
    kw = dict(attrs)
    if "technology" in kw and "tech_node" not in kw:
        kw["tech_node"] = tech_node_m(kw.pop("technology"), where)
    if "global_cycle_seconds" in kw and "cycle_period" not in kw:
        kw["cycle_period"] = kw.pop("global_cycle_seconds")
    params = inspect.signature(model_cls.__init__).parameters
    kw = {k: v for k, v in kw.items() if k in params}
    binary = neurosim_binary()
    if binary is None:
        raise SpecError(f"{where}: class {cls!r} needs NeuroSim, which is unavailable here ({unavailable_reason()}); "
                        "give the energy as a number (pJ) instead")
    try:
        with using_neurosim(binary):
            model = model_cls(**kw)
            energy, name = None, None
            for name in (a for a in wanted if a in model.get_action_names()):
                try:  # some of the plug-in's actions are broken (ShiftAdd.shift_add): take the next
                    energy = float(getattr(model, name)().energy) * 1e12
                    break
                except AttributeError:
                    continue
            if energy is None:
                raise SpecError(f"{where}: {cls} has no working action among {list(wanted)} "
                                f"(it has {model.get_action_names()})")
            area = float(model.area) * 1e12
    except SpecError:
        raise
    except Exception as e:  # NeuroSim and the plug-in raise ValueError/TypeError/AssertionError
        raise SpecError(f"{where}: hwcomponents-neurosim model {model_cls.__name__} failed: {e}") from None
    out = {"energy": energy, "area": area, "action": name,
           "source": f"hwcomponents-neurosim/{model_cls.__name__}"}
    cache.put(key, out)
    return out


def available_without_build():
    """True if a runnable NeuroSim exists already (the wheel's, or one built into the cache)."""
    if _state.get("bin"):
        return True
    try:
        from importlib.metadata import version

        pkg = _package_dir()
        cands = [pkg / "NeuroSim" / "main", writable_dir("neurosim") / version("hwcomponents-neurosim") / "main"]
    except (ImportError, OSError):
        return False
    return any(c.is_file() and _runs(c) for c in cands)
