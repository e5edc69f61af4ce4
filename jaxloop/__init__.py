"""jaxloop: Timeloop's analytical accelerator model as one batched JAX kernel."""

import os

# XLA runs a CPU program on one thread; exposing one host device per core lets a batch be
# sharded across all cores (jaxloop.model.evaluate.shard). Must happen before JAX starts.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={os.cpu_count() or 1}").strip()

import jax  # noqa: E402

# Counts exceed 2**31 (MACs of real layers) and 2**24 (float32 integers): use 64-bit everywhere.
jax.config.update("jax_enable_x64", True)

from jaxloop.errors import SpecError  # noqa: E402
from jaxloop.spec import Spec, load_spec  # noqa: E402

__all__ = ["SpecError", "Spec", "load_spec"]
__version__ = "0.1.0"
