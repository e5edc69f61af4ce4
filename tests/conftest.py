"""Shared test setup: where Timeloop's reference outputs live (../shared/reference beside the repo)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("JAXLOOP_REFERENCE", REPO.parent / "shared" / "reference"))
TIMELOOP_REF = REFERENCE / "timeloop"

if not TIMELOOP_REF.is_dir():  # a missing ground truth must fail the run, never skip it
    raise RuntimeError(f"Timeloop reference cases not found at {TIMELOOP_REF}; set JAXLOOP_REFERENCE")


def dense_cases():
    return sorted(p.name for p in TIMELOOP_REF.iterdir() if (p / "input.yaml").exists()
                  and p.name.startswith(("tl0", "tla-", "ed-")) and p.name != "ed-sparse_tensor_core_like")
