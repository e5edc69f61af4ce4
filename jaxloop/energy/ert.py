"""Accelergy ERT.yaml / ART.yaml in, per-level action energies out.

Timeloop strips the hierarchy and the `[..]` range from a table's name and matches the rest
to a level; for each action it takes the largest energy over the argument rows, and maps its
operations onto ERT actions by priority lists (topology.hpp). We do the same.
"""

import re
from dataclasses import dataclass, field

from jaxloop.errors import SpecError
from jaxloop.spec.yamlio import load_yaml, plain

ACTIONS = {
    "read": ("random_read", "read"),
    "fill": ("random_fill", "random_write", "fill", "write"),
    "update": ("random_update", "random_write", "update", "write"),
    "leak": ("leak",),
    "compute": ("mac_random", "mult_random", "mac", "mult", "compute"),
    # Sparseloop actions (Timeloop include/model/topology.hpp). Without a match, gated / skipped /
    # metadata / (de)compression storage actions cost 0 pJ; gated and skipped computes fall back
    # to the plain MAC energy.
    "gated_read": ("gated_read",),
    "skipped_read": ("skipped_read", "gated_read"),
    "gated_fill": ("gated_fill", "gated_write"),
    "skipped_fill": ("skipped_fill", "skipped_write", "gated_fill", "gated_write"),
    "gated_update": ("gated_update", "gated_write"),
    "skipped_update": ("skipped_update", "skipped_write", "gated_update", "gated_write"),
    "random_metadata_read": ("random_metadata_read", "metadata_read"),
    "gated_metadata_read": ("gated_metadata_read",),
    "skipped_metadata_read": ("skipped_metadata_read", "gated_metadata_read"),
    "random_metadata_fill": ("random_metadata_fill", "random_metadata_write", "metadata_fill", "metadata_write"),
    "gated_metadata_fill": ("gated_metadata_fill", "gated_metadata_write"),
    "skipped_metadata_fill": ("skipped_metadata_fill", "skipped_metadata_write", "gated_metadata_fill",
                              "gated_metadata_write"),
    "random_metadata_update": ("random_metadata_update", "random_metadata_write", "metadata_update",
                               "metadata_write"),
    "gated_metadata_update": ("gated_metadata_update", "gated_metadata_write"),
    "skipped_metadata_update": ("skipped_metadata_update", "skipped_metadata_write", "gated_metadata_update",
                                "gated_metadata_write"),
    "decompression_count": ("decompression_count",),
    "compression_count": ("compression_count",),
    "gated_compute": ("mac_gated", "mult_gated", "compute_gated", "mac", "mult", "compute"),
    "skipped_compute": ("mac_skipped", "mult_skipped", "compute_skipped", "mac_gated", "mult_gated",
                        "compute_gated", "mac", "mult", "compute"),
}


def component_name(name):
    """'system_top_level.GlobalBuffer[1..1]' -> 'GlobalBuffer'."""
    return re.sub(r"\[\d+\.\.\d+\]", "", str(name)).split(".")[-1]


@dataclass
class EnergyTable:
    """{component: {action: pJ}} with where each number came from."""

    energy: dict = field(default_factory=dict)
    area: dict = field(default_factory=dict)  # component -> um^2 per instance
    source: dict = field(default_factory=dict)  # component -> provenance string

    def op_energy(self, component, op):
        """Energy of Timeloop operation `op` (read/fill/update/leak/compute) on `component`, pJ."""
        actions = self.energy.get(component, {})
        for a in ACTIONS[op]:
            if a in actions:
                return float(actions[a])
        return None

    def merged(self, other):
        """This table with `other`'s entries added where this one has none."""
        e = {k: dict(v) for k, v in other.energy.items()}
        for k, v in self.energy.items():
            e.setdefault(k, {}).update(v)
        return EnergyTable(e, {**other.area, **self.area}, {**other.source, **self.source})


def parse_ert(doc, origin):
    """An Accelergy ERT document (versions 0.2-0.4) -> {component: {action: max energy}}."""
    doc = plain(doc)
    body = doc.get("ERT", doc)
    tables = body.get("tables") if isinstance(body, dict) else None
    if not isinstance(tables, list):
        raise SpecError(f"{origin}: expected 'ERT: {{version, tables: [...]}}' (Accelergy energy reference table)")
    out = {}
    for i, t in enumerate(tables):
        if not isinstance(t, dict) or "name" not in t or not isinstance(t.get("actions"), list):
            raise SpecError(f"{origin}: ERT.tables[{i}]: expected {{name, actions: [...]}}")
        acts = out.setdefault(component_name(t["name"]), {})
        for j, a in enumerate(t["actions"]):
            e = a.get("energy")
            if not isinstance(e, (int, float)) or isinstance(e, bool):
                raise SpecError(f"{origin}: ERT.tables[{i}].actions[{j}].energy: expected a number, got {e!r}")
            acts[a["name"]] = max(float(e), acts.get(a["name"], float("-inf")))
    return out


def parse_art(doc, origin):
    doc = plain(doc)
    body = doc.get("ART", doc)
    tables = body.get("tables") if isinstance(body, dict) else None
    if not isinstance(tables, list):
        raise SpecError(f"{origin}: expected 'ART: {{version, tables: [...]}}' (Accelergy area reference table)")
    return {component_name(t["name"]): float(t.get("area", 0.0)) for t in tables}


def load_tables(ert_path=None, art_path=None):
    """Read an ERT.yaml (and optionally an ART.yaml) into one EnergyTable."""
    table = EnergyTable()
    if ert_path:
        table.energy = parse_ert(load_yaml(ert_path), str(ert_path))
        table.source = {k: f"ERT file {ert_path}" for k in table.energy}
    if art_path:
        table.area = parse_art(load_yaml(art_path), str(art_path))
    return table
