"""Validated spec objects: workload, architecture, mapping, read from Timeloop YAML."""

from dataclasses import dataclass, field

from jaxloop.errors import SpecError
from jaxloop.spec.arch import Arch, ComputeLevel, StorageLevel, parse_arch
from jaxloop.spec.mapping import Mapping, parse_mapping
from jaxloop.spec.workload import DataSpace, Workload, conv2d, parse_problem
from jaxloop.spec.yamlio import merge_files, plain

__all__ = ["Arch", "ComputeLevel", "DataSpace", "Mapping", "Spec", "StorageLevel", "Workload",
           "conv2d", "load_spec", "spec_from_doc"]


@dataclass
class Spec:
    """Everything Timeloop reads for one run. `mapping` is None for mapper-only inputs."""

    workload: Workload
    arch: Arch
    mapping: Mapping = None
    doc: dict = field(default_factory=dict, repr=False)  # the merged input as plain data
    files: tuple = ()
    analog: object = None  # jaxloop.spec.analog.AnalogSpec when the design has an analog crossbar level


def spec_from_doc(doc, source, need_mapping=True, files=()):
    problems = []
    parts = {}
    for key, fn in (("problem", lambda: parse_problem(plain(doc["problem"]), source.where)),
                    ("architecture", lambda: parse_arch(plain(doc["architecture"]), source.where,
                                                        plain(doc.get("variables") or {})))):
        if key not in doc:
            problems.append(f"{', '.join(map(str, files)) or 'input'}: missing section '{key}'")
            continue
        try:
            parts[key] = fn()
        except SpecError as e:
            problems.extend(e.problems)
    if problems:
        raise SpecError(problems)
    mapping = None
    if "mapping" in doc and doc["mapping"] is not None:
        raw = plain(doc["mapping"])
        if isinstance(raw, dict) and "mapping" in raw:
            raw = raw["mapping"]
        mapping = parse_mapping(raw, parts["architecture"], parts["problem"], source.where)
    elif need_mapping:
        raise SpecError(f"{', '.join(map(str, files)) or 'input'}: missing section 'mapping' "
                        "(timeloop-model needs one mapping; use `jaxloop map` to search for one)")
    spec = Spec(parts["problem"], parts["architecture"], mapping, plain(doc), tuple(map(str, files)))
    from jaxloop.spec.analog import parse_analog

    spec.analog = parse_analog(plain(doc["architecture"]), spec.arch, spec.workload, source.where,
                               plain(doc.get("variables") or {}))
    return spec


def load_spec(*paths, need_mapping=True):
    """Read one or more Timeloop YAML files (merged like Timeloop) into a validated Spec."""
    doc, source = merge_files(paths)
    return spec_from_doc(doc, source, need_mapping, paths)
