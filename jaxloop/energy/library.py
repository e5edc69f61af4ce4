"""Built-in compound classes, used when an input does not define a class of the same name.

These are the classes of Accelergy's tutorial/primitive libraries (the same text as the
`compound_components` of timeloop-accelergy-exercises), so that an architecture written
against them (`class: regfile`, `smartbuffer_SRAM`, ...) works without repeating them.
One deliberate difference: the built-in `regfile`'s address comparators are
ceil(log2(depth)) bits wide (`width:`), as in the tutorial ERTs for `class: regfile`; the
exercises' own `regfile` passes `n_bits:`, which the Aladdin comparator model does not
read, so those comparators stay at the model's 32-bit default (as in their reference ERTs).
"""

from functools import lru_cache

_LIBRARY = """
- name: regfile
  attributes: {technology: must_specify, width: must_specify, depth: must_specify}
  subcomponents:
  - {name: "storage[1..width*depth]", class: aladdin_register, attributes: {global_cycle_seconds: global_cycle_seconds}}
  - name: "comparator[1..depth]"
    class: aladdin_comparator
    attributes: {width: "max(1, ceil(log2(depth))) if depth > 1 else 1", global_cycle_seconds: global_cycle_seconds}
  actions:
  - name: read
    subcomponents:
    - {name: "storage[1..width]", actions: [{name: read}]}
    - {name: "comparator[1..depth]", actions: [{name: compare}]}
  - name: write
    subcomponents:
    - {name: "storage[1..width]", actions: [{name: write}]}
    - {name: "comparator[1..depth]", actions: [{name: compare}]}
  - name: update
    subcomponents:
    - {name: "storage[1..width]", actions: [{name: write}]}
    - {name: "comparator[1..depth]", actions: [{name: compare}]}
  - name: leak
    subcomponents:
    - {name: "storage[1..width*depth]", actions: [{name: leak}]}
    - {name: "comparator[1..depth]", actions: [{name: leak}]}

- name: smartbuffer_SRAM
  attributes:
    technology: must_specify
    width: must_specify
    depth: must_specify
    n_rw_ports: 1
    global_cycle_seconds: must_specify
  subcomponents:
  - name: storage
    class: SRAM
    attributes: {width: width, depth: depth, n_rw_ports: n_rw_ports, technology: technology,
                 global_cycle_seconds: global_cycle_seconds}
  - name: "address_generators[0..1]"
    class: intadder
    attributes: {width: "max(1, ceil(log2(depth))) if depth >= 1 else 1", global_cycle_seconds: global_cycle_seconds}
  actions:
  - name: read
    subcomponents:
    - {name: storage, actions: [{name: read}]}
    - {name: "address_generators[1]", actions: [{name: add}]}
  - name: write
    subcomponents:
    - {name: storage, actions: [{name: write}]}
    - {name: "address_generators[0]", actions: [{name: add}]}
  - name: update
    subcomponents:
    - {name: storage, actions: [{name: write}]}
    - {name: "address_generators[0]", actions: [{name: add}]}
  - name: leak
    subcomponents:
    - {name: storage, actions: [{name: leak}]}
    - {name: "address_generators[0..1]", actions: [{name: leak}]}

- name: smartbuffer_RF
  attributes:
    technology: must_specify
    width: must_specify
    depth: must_specify
    memory_width: max(32, width)
    memory_depth: max(64, depth)
    widthscale: width / memory_width
    depthscale: depth / memory_depth
    real_depth: depth
    area_scale: widthscale * depthscale
    dynamic_energy_scale: widthscale * (depthscale ** (1.56 / 2))
    static_energy_scale: area_scale
    n_rdwr_ports: 1
    global_cycle_seconds: must_specify
  subcomponents:
  - name: storage
    class: regfile
    area_scale: area_scale
    attributes: {width: memory_width, depth: memory_depth, n_rdwr_ports: n_rdwr_ports,
                 global_cycle_seconds: global_cycle_seconds}
  - name: "address_generators[0..1]"
    class: intadder
    attributes: {width: "max(1, ceil(log2(real_depth))) if real_depth >= 1 else 1",
                 global_cycle_seconds: global_cycle_seconds}
  actions:
  - name: read
    subcomponents:
    - {name: storage, actions: [{name: read, energy_scale: dynamic_energy_scale}]}
    - {name: "address_generators[1]", actions: [{name: add}]}
  - name: write
    subcomponents:
    - {name: storage, actions: [{name: write, energy_scale: dynamic_energy_scale}]}
    - {name: "address_generators[0]", actions: [{name: add}]}
  - name: update
    subcomponents:
    - {name: storage, actions: [{name: write, energy_scale: dynamic_energy_scale}]}
    - {name: "address_generators[0]", actions: [{name: add}]}
  - name: leak
    subcomponents:
    - {name: storage, actions: [{name: leak, energy_scale: static_energy_scale}]}
    - {name: "address_generators[0..1]", actions: [{name: leak}]}

- name: regfile_metadata
  attributes:
    technology: must_specify
    width: must_specify
    depth: must_specify
    metadata_storage_width: must_specify
    metadata_storage_depth: must_specify
    metadata_counter_width: 0
  subcomponents:
  - {name: storage, class: smartbuffer_RF, attributes: {width: width, depth: depth}}
  - name: metadata_storage
    class: smartbuffer_RF
    attributes: {width: metadata_storage_width, depth: metadata_storage_depth}
  - {name: "metadata_counters[0..1]", class: intadder, attributes: {width: metadata_counter_width}}
  actions: &metadata_actions
  - {name: read, subcomponents: [{name: storage, actions: [{name: read}]}]}
  - {name: write, subcomponents: [{name: storage, actions: [{name: write}]}]}
  - {name: update, subcomponents: [{name: storage, actions: [{name: write}]}]}
  - {name: metadata_read, subcomponents: [{name: metadata_storage, actions: [{name: read}]}]}
  - {name: metadata_write, subcomponents: [{name: metadata_storage, actions: [{name: write}]}]}
  - {name: metadata_update, subcomponents: [{name: metadata_storage, actions: [{name: write}]}]}
  - name: leak
    subcomponents:
    - {name: storage, actions: [{name: leak}]}
    - {name: metadata_storage, actions: [{name: leak}]}
  - {name: decompression_count, subcomponents: [{name: "metadata_counters[1]", actions: [{name: add}]}]}
  - {name: compression_count, subcomponents: [{name: "metadata_counters[0]", actions: [{name: add}]}]}

- name: smartbuffer_metadata
  attributes:
    technology: must_specify
    width: must_specify
    depth: must_specify
    metadata_storage_width: must_specify
    metadata_storage_depth: must_specify
    n_rdwr_ports: 1
    metadata_counter_width: 0
  subcomponents:
  - {name: storage, class: smartbuffer_SRAM, attributes: {width: width, depth: depth, n_rdwr_ports: n_rdwr_ports}}
  - name: metadata_storage
    class: smartbuffer_SRAM
    attributes: {width: metadata_storage_width, depth: metadata_storage_depth, n_rdwr_ports: n_rdwr_ports}
  - {name: "metadata_counters[0..1]", class: intadder, attributes: {width: metadata_counter_width}}
  actions: *metadata_actions
"""


@lru_cache(maxsize=1)
def builtin_classes():
    """{class name: compound class definition} of the built-in library."""
    from ruamel.yaml import YAML

    from jaxloop.spec.yamlio import plain

    return {c["name"]: c for c in plain(YAML(typ="safe", pure=True).load(_LIBRARY))}
