"""Shared test set-up.

Without a CUDA device the Triton kernels run through Triton's CPU interpreter, which must be chosen
before the kernel module is imported (`@triton.jit` reads TRITON_INTERPRET when it decorates), so
it is set here, before any test module is collected. On a GPU machine the kernels compile for real.
"""

import os

import torch
from hypothesis import HealthCheck, settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Property tests run models and kernels whose per-example cost varies widely (the interpreter
# especially): no per-example deadline; the example counts are set test by test.
settings.register_profile(
    "ast-min",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("ast-min")
