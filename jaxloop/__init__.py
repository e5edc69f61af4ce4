"""jaxloop: Timeloop's analytical accelerator model as one batched JAX kernel."""

import jax

# Counts exceed 2**31 (MACs of real layers) and 2**24 (float32 integers): use 64-bit everywhere.
jax.config.update("jax_enable_x64", True)

from jaxloop.errors import SpecError  # noqa: E402
from jaxloop.spec import Spec, load_spec  # noqa: E402

__all__ = ["SpecError", "Spec", "load_spec"]
__version__ = "0.1.0"
