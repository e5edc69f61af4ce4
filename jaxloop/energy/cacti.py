"""A CACTI that runs: the wheel's binary, or one rebuilt from the wheel's sources.

The CACTI binary shipped in `hwcomponents-cacti` wheels is linked against a newer glibc than
many Linux systems have. `cacti_dir()` probes it; if it does not run, it copies the shipped
C++ sources into the jaxloop cache directory and builds them there (never touching
site-packages), once, under a file lock. CACTI's own input/output scratch files also go to
the cache directory instead of site-packages. If no CACTI can be had (no compiler, build
failure, `JAXLOOP_CACTI=off`), `cacti_dir()` returns None and SRAMs use the table model in
`primitives.py`, after one line on stderr saying so.
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

_state = {}  # "dir": Path | None, "why": str


def _runs(binary):
    """True if `binary` starts (prints its usage) on this machine."""
    try:
        p = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, cwd=binary.parent)
    except (OSError, subprocess.SubprocessError):
        return False
    return "how to use CACTI" in p.stdout + p.stderr


def _package_dir():
    import hwcomponents_cacti

    return Path(hwcomponents_cacti.__file__).parent / "cacti"


def _version():
    from importlib.metadata import version

    return version("hwcomponents-cacti")


def _build(src, dest):
    """Compile CACTI from `src` into `dest` (atomic rename at the end). Returns an error or None."""
    if not shutil.which("make") or not shutil.which("g++"):
        return "no C++ toolchain (make, g++) to rebuild it"
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".build-"))
    try:
        shutil.copytree(src, work / "cacti", ignore=shutil.ignore_patterns("obj_*", "cacti", "*.o"))
        jobs = str(max(1, min(8, os.cpu_count() or 1)))
        cmd = ["make", "-j", jobs, "opt", "CXXFLAGS=-O2 -w -Wno-unknown-pragmas -DNTHREADS=1"]
        p = subprocess.run(cmd, cwd=work / "cacti", capture_output=True, text=True, timeout=900)
        if p.returncode != 0 or not _runs(work / "cacti" / "cacti"):
            tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or ["?"]
            return f"rebuild failed ({tail[0][:200]})"
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        os.replace(work / "cacti", dest)
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return f"rebuild failed ({e})"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cacti_dir():
    """Directory with a runnable `cacti` binary, or None (the reason is in `unavailable_reason()`)."""
    if "dir" in _state:
        return _state["dir"]
    _state["dir"], _state["why"] = None, ""
    if os.environ.get("JAXLOOP_CACTI", "auto").lower() in ("off", "0", "no", "false"):
        _state["why"] = "disabled by JAXLOOP_CACTI=off"
        return None
    try:
        pkg = _package_dir()
    except ImportError:
        _state["why"] = "hwcomponents-cacti is not installed"
        return None
    if (pkg / "cacti").is_file() and _runs(pkg / "cacti"):
        _state["dir"] = pkg
        return pkg
    try:
        dest = writable_dir("cacti") / _version()
    except OSError as e:
        _state["why"] = str(e)
        return None
    if not (dest / "cacti").is_file() or not _runs(dest / "cacti"):
        with open(dest.parent / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same copy
            if not ((dest / "cacti").is_file() and _runs(dest / "cacti")):
                print(
                    f"jaxloop: the CACTI binary in hwcomponents-cacti does not run here; "
                    f"building it once from its sources into {dest} ...",
                    file=sys.stderr,
                )
                err = _build(pkg, dest)
                if err:
                    _state["why"] = err
                    print(f"jaxloop: CACTI unavailable: {err}; SRAMs use the table model", file=sys.stderr)
                    return None
    _state["dir"] = dest
    return dest


def unavailable_reason():
    return _state.get("why", "")


@contextlib.contextmanager
def using_cacti(directory):
    """Point hwcomponents-cacti at `directory` and at a scratch dir in the jaxloop cache."""
    import hwcomponents_cacti.hwcomponents_cacti as hc

    scratch = writable_dir("cacti-io")
    _prune(scratch, keep=300)
    saved = {k: getattr(hc, k, None) for k in ("_get_cacti_dir", "_clean_tmp_dir")}
    hc._get_cacti_dir = lambda logger=None: str(directory)
    hc._clean_tmp_dir = lambda: str(scratch)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is not None:
                setattr(hc, k, v)


def _prune(folder, keep):
    """Delete all but the newest `keep` scratch files (CACTI leaves three per query)."""
    try:
        files = sorted((p for p in folder.iterdir() if p.suffix != ".lock"), key=lambda p: p.stat().st_mtime)
        for p in files[:-keep]:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def reset():
    """Forget the probe result (tests)."""
    _state.clear()
