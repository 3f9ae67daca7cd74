"""ast-min installs a top-level `kernels` package, which is also the import name of an unrelated PyPI
package that transformers probes for (`is_kernels_available`). transformers reads the version of the
distribution that owns the import name, ast-min's, and must keep answering False (docs/DESIGN.md): these
tests catch a version bump into the range it accepts. Each check runs in a fresh interpreter because
transformers caches the probe's answer.
"""

import importlib.metadata
import subprocess
import sys

from packaging.version import Version


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_transformers_does_not_mistake_our_kernels_for_the_hub_kernels_package():
    assert run_python(
        "from transformers.utils.import_utils import is_kernels_available; print(is_kernels_available())"
    ) == "False"


def test_the_kernels_import_name_belongs_to_ast_min_at_a_version_outside_the_probed_range():
    owners = set(importlib.metadata.packages_distributions().get("kernels", []))
    assert owners == {"ast-min"}, f"`kernels` is provided by {owners}: the probe would read their version"
    version = Version(importlib.metadata.version("ast-min"))
    low, high = run_python(
        "from transformers.utils import import_utils as u; print(u.KERNELS_MIN_VERSION, u.KERNELS_MAX_VERSION)"
    ).split()
    assert not Version(low) <= version < Version(high)


def test_import_is_cheap_and_exports_the_front_end():
    # `import ast_min` imports no torch-heavy module until a name is used (lazy exports).
    out = run_python(
        "import sys, ast_min; before = 'ast_min.features' in sys.modules; "
        "ast_min.ASTFeatureExtractor; ast_min.load_audio; ast_min.compute_norm_stats; "
        "print(before, 'ast_min.features' in sys.modules)"
    )
    assert out == "False True"
