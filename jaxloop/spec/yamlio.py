"""Read and merge YAML files the way Timeloop does, remembering where each key came from."""

from pathlib import Path

from ruamel.yaml import YAML, YAMLError

from jaxloop.errors import SpecError


class Source:
    """Maps key paths of a merged document back to 'file:line' for error messages."""

    def __init__(self):
        self.files = {}  # top-level key -> (path, node)

    def where(self, *path):
        """'file:line: a.b[2].c' for a key path into the merged document."""
        if not path or path[0] not in self.files:
            return ".".join(map(str, path))
        file, node = self.files[path[0]]
        line = None
        cur = node
        for key in path[1:]:
            try:
                if hasattr(cur, "lc"):
                    if isinstance(key, int):
                        line = cur.lc.item(key)[0] + 1
                    else:
                        line = cur.lc.key(key)[0] + 1
                cur = cur[key]
            except (KeyError, IndexError, TypeError, AttributeError):
                break
        if line is None and hasattr(node, "lc"):
            line = node.lc.line + 1
        keys = str(path[0]) + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[1:])
        return f"{file}:{line}: {keys}" if line else f"{file}: {keys}"


def load_yaml(path):
    """Parse one YAML file (round-trip loader keeps line numbers)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read file ({e.strerror})") from None
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {str(e).splitlines()[0]} {getattr(e, 'problem_mark', '')}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of sections (architecture, problem, mapping, ...) at top level")
    return data


def merge_files(paths):
    """Merge top-level sections of several files; a later file's section replaces an earlier one."""
    doc, source = {}, Source()
    for p in paths:
        for key, value in load_yaml(p).items():
            doc[key] = value
            source.files[key] = (str(p), value)
    return doc, source


def plain(obj):
    """ruamel's commented containers -> plain dict/list (for pydantic and hashing)."""
    if isinstance(obj, dict):
        out = {str(k): plain(v) for k, v in obj.items()}
        tag = getattr(getattr(obj, "tag", None), "value", None)
        if tag and str(tag).startswith("!"):
            out["_tag"] = str(tag)  # timeloopfe's !Container / !Component node types
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "real") and type(obj).__name__ in ("ScalarFloat",):
        return float(obj)
    if type(obj).__name__ == "ScalarInt":
        return int(obj)
    if type(obj).__name__ in ("ScalarBoolean",):
        return bool(obj)
    return obj
