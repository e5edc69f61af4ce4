"""On-disk cache of primitive-component estimates, in a user cache directory.

Location: `$JAXLOOP_CACHE` if set, else `$XDG_CACHE_HOME/jaxloop`, else `~/.cache/jaxloop`.
Each entry is one small JSON file named by the SHA-256 of its key (class, attributes,
plug-in versions), written atomically, so concurrent processes never see half an entry.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

# Bump when the meaning of a cached number changes (new attribute mapping, new model).
SCHEMA = 3

_memory = {}


def cache_root():
    """The jaxloop cache directory (not created here)."""
    env = os.environ.get("JAXLOOP_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "jaxloop"


def writable_dir(*parts):
    """cache_root()/parts, created; a per-user temp folder if the cache dir is not writable."""
    for base in (cache_root(), Path(tempfile.gettempdir()) / f"jaxloop-{os.getuid()}"):
        path = base.joinpath(*parts)
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise OSError(f"no writable folder for {'/'.join(parts)} (set JAXLOOP_CACHE)")


def _plugin_versions():
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("hwcomponents", "hwcomponents-cacti", "hwcomponents-library"):
        try:
            out.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg}=none")
    return out


_VERSIONS = None


def make_key(*parts):
    """Hex digest identifying `parts` (JSON-serialisable) under this jaxloop + plug-in version."""
    global _VERSIONS
    if _VERSIONS is None:
        _VERSIONS = _plugin_versions()
    blob = json.dumps([SCHEMA, _VERSIONS, parts], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def _path(key):
    return cache_root() / "estimates" / key[:2] / f"{key}.json"


def get(key):
    """Cached value for `key`, or None."""
    root = str(cache_root())
    if (root, key) in _memory:
        return _memory[(root, key)]
    try:
        value = json.loads(_path(key).read_text())
    except (OSError, ValueError):
        return None
    _memory[(root, key)] = value
    return value


def put(key, value):
    """Store `value` (JSON-serialisable) under `key`; a read-only cache dir is not an error."""
    _memory[(str(cache_root()), key)] = value
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except OSError:
        pass


def clear_memory():
    """Forget the in-process copy (the files stay)."""
    _memory.clear()
