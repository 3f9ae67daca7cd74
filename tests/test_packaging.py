"""Packaging: the kernels install as `ast_min.kernels`, and nothing of ast-min takes the import name
`kernels`, which belongs to Hugging Face's package (transformers >= 5.25 requires and imports it).

Each import check runs in a fresh interpreter started in a given working directory, because the
directory a Python starts in decides what `import kernels` finds (docs/DESIGN.md, "Where the kernels
live"). With a transformers that does not require Hugging Face's `kernels`, that package may be absent:
then `import kernels` must fail as it would anywhere else, never find ast-min's folder.
"""

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _hugging_face_kernels() -> str | None:
    """Where the installed distribution `kernels` (Hugging Face's) has its package, if it is installed."""
    try:
        dist = importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        return None
    return os.path.realpath(dist.locate_file("kernels/__init__.py"))


HF_KERNELS = _hugging_face_kernels()  # read from the metadata: an import here could find the repository's folder

# Builds transformers' AST model (which imports Hugging Face's `kernels` where transformers needs it),
# runs it, then reports where `import kernels` and `ast_min.kernels` come from.
PROBE = r"""
import importlib, json, os, sys, torch, transformers
config = transformers.ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                num_mel_bins=16, max_length=16, num_labels=3)
torch.manual_seed(0)
logits = transformers.ASTForAudioClassification(config).eval()(torch.randn(1, 16, 16)).logits
try:
    import kernels
    hub = os.path.realpath(kernels.__file__)
except ImportError as e:
    hub = "ImportError: " + str(e)
from ast_min import kernels as ours
print(json.dumps({"logits": list(logits.shape), "kernels": hub, "ours": os.path.realpath(ours.__file__),
                  "flash": callable(getattr(ours, "flash_attention", None))}))
"""


def run_probe(cwd: Path, how: str, tmp_path: Path) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if how == "-c":
        cmd, stdin = [sys.executable, "-c", PROBE], None
    elif how == "stdin":  # as the REPL reads it: sys.path[0] is the working directory
        cmd, stdin = [sys.executable, "-"], PROBE
    else:  # python -m MODULE puts the working directory first on sys.path, too
        (tmp_path / "probe_module.py").write_text(PROBE)
        cmd, stdin = [sys.executable, "-m", "probe_module"], None
        env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, f"{how} in {cwd}:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("where, how", [("root", "-c"), ("root", "stdin"), ("root", "-m"), ("notebooks", "-c"),
                                        ("elsewhere", "-c")])  # fmt: skip
def test_import_kernels_is_hugging_faces_package_from_every_working_directory(where, how, tmp_path):
    cwd = {"root": ROOT, "notebooks": ROOT / "notebooks", "elsewhere": tmp_path}[where]
    found = run_probe(cwd, how, tmp_path)
    assert found["logits"] == [1, 3]  # transformers built and ran its AST model
    assert found["ours"] == str((ROOT / "kernels" / "__init__.py").resolve()) and found["flash"]
    if HF_KERNELS:
        assert found["kernels"] == HF_KERNELS, found
        assert not found["kernels"].startswith(str(ROOT / "kernels")), found
    else:
        assert found["kernels"].startswith("ImportError"), found
        if where == "root":  # ast-min's folder is found first there, and says how to import it instead
            assert "ast_min.kernels" in found["kernels"], found


def test_the_installed_distributions_give_kernels_to_hugging_face_alone():
    owners = set(importlib.metadata.packages_distributions().get("kernels", []))
    assert "ast-min" not in owners, owners
    assert importlib.metadata.packages_distributions().get("ast_min") == ["ast-min"]


def _build(kind: str, out: Path) -> Path:
    """Build a wheel or an sdist of a copy of the tracked files (the build writes egg-info beside them)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    src = out / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    code = (f"import os; from setuptools import build_meta as b; os.chdir({str(src)!r}); "
            f"print(b.build_{kind}({str(out)!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_wheel_installs_the_kernels_as_ast_min_kernels_and_no_top_level_kernels(tmp_path):
    wheel = _build("wheel", tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.split("/")[0] == "kernels"], "the wheel holds a top-level kernels/"
    installed = "/".join(("ast_min", "kernels", ""))  # where the folder's files go
    kernel_files = {n.split("/")[-1] for n in names if n.startswith(installed)}
    on_disk = {p.name for p in (ROOT / "kernels").glob("*.py")}
    assert kernel_files == on_disk, on_disk ^ kernel_files
    top_level = [n for n in names if n.endswith("top_level.txt")]
    for n in top_level:
        assert zipfile.ZipFile(wheel).read(n).decode().split() == ["ast_min"]
    # Every folder of ast_min/ that holds an __init__.py is a package the wheel carries (the list in
    # pyproject.toml is written out by hand, since discovery cannot see ast_min.kernels).
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "ast_min").rglob("__init__.py")}
    assert packages <= {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}


@pytest.mark.slow
def test_the_sdist_declares_no_top_level_kernels(tmp_path):
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
        top_level = [m for m in members if m.endswith(".egg-info/top_level.txt")]
        assert top_level, members[:20]
        for m in top_level:
            assert tar.extractfile(m).read().decode().split() == ["ast_min"]
        # The sources keep the repository's layout (kernels/ at the top); installing maps the folder.
        assert any(m.endswith("/kernels/fused_attention.py") for m in members)


def test_import_is_cheap_and_exports_the_front_end():
    # `import ast_min` imports no torch-heavy module until a name is used (lazy exports).
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, ast_min; before = 'ast_min.features' in sys.modules; "
         "ast_min.ASTFeatureExtractor; ast_min.load_audio; ast_min.compute_norm_stats; "
         "print(before, 'ast_min.features' in sys.modules)"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True"
