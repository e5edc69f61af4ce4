"""The batched kernel: pure functions over [batch, level, dim/dataspace] arrays."""
