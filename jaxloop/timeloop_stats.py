"""Read Timeloop's `timeloop-model.stats.txt` into plain dictionaries.

    stats = parse_stats("timeloop-model.stats.txt")
    stats["GlobalBuffer"]["Inputs"]["Scalar reads (per-instance)"]   # 288
    stats["GlobalBuffer"]["STATS"]["Cycles"]                          # level-wide stats
    stats["GlobalBuffer"]["SPECS"]["Block size"]                      # level specs
    stats["summary"]["Cycles"], stats["summary"]["fJ/Compute"]["Total"]

Field names are exactly as printed. Values are numbers where the text starts with one
(units, percent signs and "(16*16)" annotations are dropped; `summary["units"]` keeps the
units of the summary lines), otherwise the raw string. A level that bypasses a dataspace does
not list it. The "Operational Intensity Stats" section is returned under "intensity".
"""

import re

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _value(text):
    text = text.strip()
    m = _NUMBER.match(text)
    if not m:
        return text
    s = m.group(0)
    return float(s) if any(c in s for c in ".eE") else int(s)


def _unit(text):
    m = _NUMBER.match(text.strip())
    return text.strip()[m.end():].strip() if m else ""


def parse_stats(path):
    """Parse one stats file: {level_name: {"SPECS": {...}, "STATS": {...}, dataspace: {...}},
    "summary": {...}, "intensity": {...}}."""
    with open(path) as f:
        lines = f.read().splitlines()
    out, summary, intensity = {}, {"units": {}}, {}
    section, level, block, sub = None, None, None, None
    for raw in lines:
        line = raw.rstrip()
        text = line.strip()
        if not text or set(text) <= {"-"}:
            continue
        if not raw.startswith(" ") and text in ("Buffer and Arithmetic Levels", "Networks",
                                                "Operational Intensity Stats", "Summary Stats"):
            section, level, block, sub = text, None, None, None
            continue
        if section == "Buffer and Arithmetic Levels":
            m = re.match(r"^=== (.+) ===$", text)
            if m:
                level, sub, block = out.setdefault(m.group(1), {"SPECS": {}, "STATS": {}}), None, None
            elif level is None or re.match(r"^Level \d+$", text):
                continue
            elif text in ("SPECS", "STATS"):
                sub, block = text, None
            elif sub == "STATS" and text.endswith(":") and ":" not in text[:-1]:  # "    Weights:"
                block = level.setdefault(text[:-1], {})
            elif ":" in text and sub is not None:
                key, _, val = text.partition(":")
                # Dataspace fields are indented deeper than the level-wide STATS lines.
                deep = len(raw) - len(raw.lstrip()) > 4
                (block if block is not None and deep else level[sub])[key.strip()] = _value(val)
        elif section == "Operational Intensity Stats":
            m = re.match(r"^=== (.+) ===$", text)
            if m:
                block = intensity.setdefault(m.group(1), {})
            elif ":" in text:
                key, _, val = text.partition(":")
                (block if block is not None else intensity)[key.strip()] = _value(val)
        elif section == "Summary Stats":
            if not raw.startswith(" ") and text.startswith("fJ/"):
                block = summary.setdefault(text, {})
            elif raw.startswith(" ") and "=" in text and block is not None:
                key, _, val = text.partition("=")
                block[key.strip()] = _value(val)
            elif "=" in text:
                key, _, val = text.partition("=")
                summary[key.strip()] = _value(val)
                block = None
            elif ":" in text:
                key, _, val = text.partition(":")
                summary[key.strip()] = _value(val)
                if _unit(val):
                    summary["units"][key.strip()] = _unit(val)
                block = None
    out["summary"] = summary
    out["intensity"] = intensity
    return out


def parse_format_ranks(path):
    """Sparseloop's per-rank format lines of a stats file, which `parse_stats` cannot key:

        {level: {dataspace: {"Actual scalar format reads (per-instance)": {1: (0, 18), 0: (64, 0)}, ...}}}

    A section printed as ': 0' (no accesses) maps to {}. Sections are the lines ending in
    "(per-instance)" with "format" in them plus "Max utilized Repr format storage capacity"."""
    out, level, ds, section = {}, None, None, None
    with open(path) as f:
        for raw in f:
            text = raw.strip()
            m = re.match(r"^=== (.+) ===$", text)
            if m:
                level, ds, section = out.setdefault(m.group(1), {}), None, None
                continue
            if level is None:
                continue
            if text.endswith(":") and ":" not in text[:-1] and raw.startswith("    ") and not raw.startswith("     "):
                ds, section = level.setdefault(text[:-1], {}), None
                continue
            if ds is None:
                continue
            m = re.match(r"^Rank (\d+) \(metadata, payload\): \((\d+),\s*(\d+)\)$", text)
            if m and section is not None:
                ds[section][int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
                continue
            if "scalar format" in text or "Repr format storage capacity" in text:
                key, _, val = text.partition(":")
                section = key.strip()
                ds[section] = {}
            else:
                section = None
    return out
