"""Mappings as integer tensors: a batch of B mappings of one architecture and workload.

Shapes: temporal, spatial_x, spatial_y, perm are [B, L, D]; keep is [B, L, T]. Level 0 is the
innermost storage level. perm[b, l] lists dimension indices innermost first.
"""

from typing import NamedTuple

import numpy as np

from jaxloop.spec.mapping import Mapping


class MappingBatch(NamedTuple):
    temporal: np.ndarray
    spatial_x: np.ndarray
    spatial_y: np.ndarray
    perm: np.ndarray
    keep: np.ndarray

    @property
    def size(self):
        return self.temporal.shape[0]

    @classmethod
    def from_mappings(cls, mappings):
        return cls(*(np.stack([getattr(m, f) for m in mappings]).astype(np.int64 if f != "keep" else bool)
                     for f in cls._fields))

    def mapping(self, i):
        """Row i as a Mapping (exact round trip)."""
        row = [np.asarray(getattr(self, f)[i]) for f in self._fields]
        return Mapping(row[0].astype(np.int64), row[1].astype(np.int64), row[2].astype(np.int64),
                       row[3].astype(np.int64), row[4].astype(bool))

    def take(self, idx):
        return MappingBatch(*(np.asarray(a)[idx] for a in self))
