"""Run in the grading worker before a kernel assignment's file loads: unwritten output reads NaN.

torch.empty then fills its memory with NaN (torch.utils.deterministic.fill_uninitialized_memory, on
under deterministic algorithms; warn_only keeps every operation allowed). So an output element no
program of a student's kernel wrote reads NaN, not stale memory: a kernel launched over too few
programs, or the wrong ones, fails the same way on every run, and the diagnosis can reproduce which
tiles it wrote. Self-contained (torch only), as every module the worker runs must be.
"""

import torch

torch.use_deterministic_algorithms(True, warn_only=True)
