"""hwcomponents models that jaxloop adds: Accelergy-style SRAM, a table SRAM, FP units.

* `NodeExactSRAM`: hwcomponents-cacti's SRAM, but CACTI is run at the requested node when
  it lies inside CACTI's own technology range (22-90 nm), as Accelergy's CACTI plug-in did,
  instead of interpolating linearly between the 22/32/45/65/90 nm runs.
* `TableSRAM`: used only when no CACTI binary can run. One CACTI point (45 nm, 64 KiB,
  64-bit port) scaled with hwcomponents' own CACTI-fitted depth, width and node rules.
* `FPAdder`, `FPMultiplier`: hwcomponents has no floating-point models; these are tables
  from M. Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm: FP32 add 0.9 pJ /
  4184 um^2, FP32 multiply 3.7 pJ / 7700 um^2, FP16 add 0.4 pJ / 1360 um^2, FP16 multiply
  1.1 pJ / 1640 um^2), scaled by width and technology node. No leakage data: leak is 0.
"""

import math

from hwcomponents import ActionCost, ComponentModel, action
from hwcomponents.scaling import (
    cacti_depth_area,
    cacti_depth_energy,
    cacti_depth_leak,
    linear,
    noscale,
    tech_node_area,
    tech_node_energy,
    tech_node_latency,
    tech_node_leak,
    tech_node_throughput,
)
from hwcomponents_cacti import SRAM as _CactiSRAM

CACTI_NODES_NM = (22.0, 90.0)


class NodeExactSRAM(_CactiSRAM):
    """CACTI SRAM evaluated at the exact technology node when CACTI supports it."""

    component_name = ["NodeExactSRAM"]
    priority = 0.3

    def _interp_tech_node(self):
        if CACTI_NODES_NM[0] <= self.tech_node <= CACTI_NODES_NM[1]:
            return self._interp_size(self.tech_node)
        return super()._interp_tech_node()


def _scale_node(model, tech_node, ref):
    model.scale(
        "tech_node",
        tech_node,
        ref,
        area_scale_function=tech_node_area,
        energy_scale_function=tech_node_energy,
        latency_scale_function=tech_node_latency,
        throughput_scale_function=tech_node_throughput,
        leak_power_scale_function=tech_node_leak,
    )


class TableSRAM(ComponentModel):
    """SRAM from one CACTI 7 point (45 nm, 8192 x 64 bit: read 25.87 pJ, write 19.65 pJ,
    leakage 1.67 mW, 0.209 mm^2), scaled by depth, width and node."""

    component_name = ["TableSRAM"]
    priority = 0.05

    def __init__(self, tech_node: float, width: int, depth: int, n_rw_ports: int = 1, n_banks: int = 1):
        super().__init__(leak_power=1.67027e-3, area=209046e-12)
        _scale_node(self, tech_node, 45e-9)
        self.width = self.scale(
            "width", width, 64, area_scale_function=linear, energy_scale_function=linear,
            leak_power_scale_function=linear, latency_scale_function=noscale, throughput_scale_function=noscale,
        )
        self.depth = self.scale(
            "depth", depth, 8192, area_scale_function=cacti_depth_area, energy_scale_function=cacti_depth_energy,
            leak_power_scale_function=cacti_depth_leak, latency_scale_function=noscale,
            throughput_scale_function=noscale,
        )

    @action(bits_per_action="width")
    def read(self) -> ActionCost:
        return ActionCost(energy=25.8695e-12, throughput=1e9, latency=1e-9)

    @action(bits_per_action="width")
    def write(self) -> ActionCost:
        return ActionCost(energy=19.6486e-12, throughput=1e9, latency=1e-9)


def _fp_bits(exponent, mantissa, width):
    """Total width. Accelergy's convention (tutorial fpmac): mantissa = width - exponent, so
    FP32 is exponent 8 + mantissa 24 and FP16 is 5 + 11."""
    if width is not None and (exponent is None or mantissa is None):
        return float(width)
    return float((exponent if exponent is not None else 8) + (mantissa if mantissa is not None else 24))


class FPAdder(ComponentModel):
    """Floating-point adder (Horowitz ISSCC'14, 45 nm), energy and area linear in the bit width."""

    component_name = ["FPAdder", "fpadder"]
    priority = 0.2

    def __init__(self, tech_node: float, exponent: int = None, mantissa: int = None, width: int = None):
        bits = _fp_bits(exponent, mantissa, width)
        super().__init__(leak_power=0.0, area=4184e-12 * bits / 32)
        self.energy_pj = 0.9 * bits / 32
        _scale_node(self, tech_node, 45e-9)

    @action
    def add(self) -> ActionCost:
        return ActionCost(energy=self.energy_pj * 1e-12, throughput=1e9, latency=1e-9)

    @action
    def read(self) -> ActionCost:
        return self.add()


class FPMultiplier(ComponentModel):
    """Floating-point multiplier (Horowitz ISSCC'14, 45 nm). Energy and area follow a power law
    in the significand width fitted through the FP16 and FP32 points."""

    component_name = ["FPMultiplier", "fpmultiplier"]
    priority = 0.2

    _E_EXP = math.log(3.7 / 1.1) / math.log(24 / 11)
    _A_EXP = math.log(7700 / 1640) / math.log(24 / 11)

    def __init__(self, tech_node: float, exponent: int = None, mantissa: int = None, width: int = None):
        if mantissa is None:
            mantissa = _fp_bits(exponent, mantissa, width) - (exponent if exponent is not None else 8)
        sig = float(mantissa) / 24  # significand relative to FP32
        super().__init__(leak_power=0.0, area=7700e-12 * sig**self._A_EXP)
        self.energy_pj = 3.7 * sig**self._E_EXP
        _scale_node(self, tech_node, 45e-9)

    @action
    def multiply(self) -> ActionCost:
        return ActionCost(energy=self.energy_pj * 1e-12, throughput=1e9, latency=1e-9)

    @action
    def read(self) -> ActionCost:
        return self.multiply()


class FPMAC(ComponentModel):
    """Floating-point multiply-accumulate: one FPMultiplier and one FPAdder."""

    component_name = ["FPMAC", "fpmac"]
    priority = 0.2

    def __init__(self, tech_node: float, multiplier_width: int = 32, adder_width: int = 32, exponent: int = 8):
        self.adder = FPAdder(tech_node, exponent=exponent, mantissa=adder_width - exponent)
        self.multiplier = FPMultiplier(tech_node, exponent=exponent, mantissa=multiplier_width - exponent)
        super().__init__(subcomponents=[self.adder, self.multiplier])

    @action
    def compute(self) -> ActionCost:
        self.adder.add()
        self.multiplier.multiply()

    @action
    def mac(self) -> ActionCost:
        self.compute()
