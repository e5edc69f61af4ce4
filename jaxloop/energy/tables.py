"""Pick the energy table for a spec: an ERT file, jaxloop's own estimate, or both merged."""

from jaxloop.energy.ert import load_tables


def tables_for(spec, ert=None, art=None):
    """ERT/ART files win where given; components they lack are estimated with hwcomponents."""
    table = load_tables(ert, art)
    names = [lv.name for lv in spec.arch.levels] + [spec.arch.compute.name]
    if ert and all(n in table.energy or "dummy" in lv_cls(spec, n) for n in names):
        return table
    from jaxloop.energy.estimate import estimate_tables  # hwcomponents is only needed here

    return table.merged(estimate_tables(spec.doc))


def lv_cls(spec, name):
    for lv in spec.arch.levels:
        if lv.name == name:
            return lv.cls.lower()
    return spec.arch.compute.cls.lower()
