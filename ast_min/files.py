"""Checkpoint files: JSON with friendly errors, hub ids, and directories written all-or-nothing.

Written once and shared by the config (`config.json`), the feature extractor
(`preprocessor_config.json`) and the model (`model.safetensors`), so that all three find, read and
write checkpoints the same way:

- `read_json_object` / `json_string` / `write_json`: a JSON object in, a sorted, indented one out;
  a missing, unreadable or non-object file is a FileNotFoundError or ValueError naming the file.
- `resolve`: a local directory or file is used as is; a hub id (`owner/name`) is downloaded with
  `huggingface_hub`, or taken from the local hub cache when offline; `subfolder=` selects a
  directory inside either.
- `replace_directory`: a checkpoint directory is written into a temporary sibling and then swapped
  in, so an interruption leaves either the old checkpoint or the new one, never a mixture.
- `check_output_file`, `new_file_beside`, `keep_mode`: a result file (`--out`) is refused early when
  it names a directory, and written into a fresh file beside it that is renamed over it, with the
  permissions a plain write would have given it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

HOW_TO_GET_ONE = (
    "pass a local checkpoint directory (config.json + model.safetensors), an original-repository "
    ".pth file, or a Hugging Face hub id such as MIT/ast-finetuned-audioset-10-10-0.4593 when online; "
    "a transformers model saved with save_pretrained(dir) works too"
)
# file names of pickled state dicts (an original-repository .pth and its kin): never hub ids
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# what a hub download fetches: the files ast-min reads, nothing else (no ONNX or TF weights)
HUB_FILES = ("config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin")


# ---- JSON ---------------------------------------------------------------------------------------
def read_json_object(file: str | os.PathLike, what: str) -> dict:
    """The JSON object in `file`; `what` names the file's role in the error messages ("config", ...)."""
    file = os.fspath(file)
    if not os.path.isfile(file):
        raise FileNotFoundError(
            f"no {os.path.basename(file)} at {file!r}: expected a checkpoint directory holding the {what} file, or the file itself"
        )
    try:
        with open(file, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file!r} is not valid JSON ({e}): re-download or re-save the {what}") from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{file!r} holds a JSON {type(value).__name__}, not an object of {what} settings: "
            f"re-download or re-save the {what}"
        )
    return value


def json_string(value: dict) -> str:
    """The JSON text transformers writes: keys sorted, two-space indent, a final newline."""
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


# ---- result files written all-or-nothing -----------------------------------------------------------
def check_output_file(path: str | os.PathLike, option: str, example: str) -> None:
    """Refuse an output path that is a directory, before any work: the final rename onto it would fail.

    option: what the message calls the path ("--out"); example: a file name to suggest inside it.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a directory: name a file, e.g. {os.path.join(path, example)}")


def new_file_beside(target: str | os.PathLike, tag: str) -> str:
    """Create an empty, uniquely named file next to `target` (same file system: renaming it over `target`
    is atomic) and return its path.

    It is created as `open(target, "w")` would create `target`, mode 0o666 less the process umask,
    and not as `tempfile.mkstemp` does (0o600), so the file renamed into place is as readable as one
    written directly. `tag` goes into the name (".partial", ".unverified").
    """
    target = os.fspath(target)
    directory, name = os.path.split(target)
    path = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}{tag}")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return path


def keep_mode(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Give `new` the permission bits (and, where allowed, the owner) of an existing `target`, which it
    is about to replace: overwriting a file in place keeps both, and so does replacing it this way."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return
    os.chmod(new, stat.S_IMODE(st.st_mode))
    try:
        os.chown(new, st.st_uid, st.st_gid)
    except (PermissionError, AttributeError):  # only root may give a file away; Windows has no chown
        pass


def write_json(file: str | os.PathLike, value: dict) -> str:
    """Write `value` to `file` (directories created) all-or-nothing: a temporary file renamed over it.

    Returns the path written.
    """
    file = os.fspath(file)
    directory = os.path.dirname(file) or "."
    if os.path.isfile(directory):  # save_pretrained(path) given a file's path
        raise ValueError(f"{directory!r} is a file, not a directory: choose another place to save the settings")
    os.makedirs(directory, exist_ok=True)
    tmp = f"{file}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json_string(value))
        keep_mode(tmp, file)
        os.replace(tmp, file)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return file


# ---- where a checkpoint is ----------------------------------------------------------------------
def looks_like_hub_id(name: str) -> bool:
    """`owner/name` with the characters the hub allows, and not a file name with a checkpoint suffix."""
    return re.fullmatch(r"[\w.\-]+/[\w.\-]+", name) is not None and not name.endswith((*PICKLE_SUFFIXES, ".json"))


def resolve(path_or_hub_id: str | os.PathLike, subfolder: str = "", **hub_options) -> Path:
    """A local checkpoint directory or file, downloading a hub id (or reading the hub cache offline).

    hub_options (revision, cache_dir, token, local_files_only, ...) go to
    `huggingface_hub.snapshot_download`; only the files ast-min reads are fetched.
    """
    path = Path(os.fspath(path_or_hub_id)).expanduser()
    finish_interrupted_swap(path, remove_leftovers=False)  # reading never deletes
    if not path.exists():
        name = os.fspath(path_or_hub_id)
        if not looks_like_hub_id(name):
            raise FileNotFoundError(f"no checkpoint at {name!r}: {HOW_TO_GET_ONE}")
        path = Path(_download(name, subfolder, hub_options))
    path = path / subfolder if subfolder else path
    if not path.exists():
        raise FileNotFoundError(f"{os.fspath(path_or_hub_id)!r} has no subfolder {subfolder!r}")
    return path


def _download(name: str, subfolder: str, hub_options: dict) -> str:
    from huggingface_hub import snapshot_download  # on use: only hub ids need it, and it is slow to import

    patterns = [f"{subfolder}/{f}" if subfolder else f for f in HUB_FILES]
    options = {k: v for k, v in hub_options.items() if v is not None}
    try:
        return snapshot_download(name, allow_patterns=patterns, **options)
    except Exception as online_error:  # offline, unknown repo, gated...: try the local hub cache
        try:
            return snapshot_download(name, allow_patterns=patterns, **{**options, "local_files_only": True})
        except Exception:
            first_line = str(online_error).splitlines()[0] if str(online_error) else ""
            raise FileNotFoundError(
                f"{name!r} is not a local path and could not be downloaded from the Hugging Face hub "
                f"({type(online_error).__name__}: {first_line}) nor found in the local hub cache; {HOW_TO_GET_ONE}"
            ) from None


# ---- writing a checkpoint directory all-or-nothing ------------------------------------------------
def replace_directory(directory: str | os.PathLike, write: Callable[[Path], Iterable[str]], owned: Iterable[str]) -> list[str]:
    """Write a checkpoint into `directory` atomically: `write(tmp)` fills a temporary sibling, then it is swapped in.

    owned: the file names this kind of writer produces. Files of the old directory that are owned
    but not rewritten are dropped (a stale preprocessor_config.json would otherwise be read with
    new weights); files it does not own (a README, the user's notes) are carried over untouched.
    An interruption before the swap leaves the old directory as it was; the swap itself is two
    renames, and between them the complete new checkpoint sits at `<directory>.tmp-*` and the old
    one at `<directory>.old-*`. Returns the paths written, inside `directory`.
    """
    given, directory = Path(directory), Path(os.path.abspath(directory))  # "." and "x/.." name no sibling
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{str(given)!r} is a file, not a directory: choose another place to save the checkpoint")
    if directory == Path.cwd() or directory in Path.cwd().parents:
        # the swap renames the directory away, and this process's working directory with it
        raise ValueError(
            f"{str(given)!r} is the current directory or holds it, and saving replaces the directory "
            "whole: save into a directory of its own, e.g. save_pretrained('my-model')"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    finish_interrupted_swap(directory)
    tag = uuid.uuid4().hex[:8]
    tmp, old = directory.with_name(f"{directory.name}.tmp-{tag}"), directory.with_name(f"{directory.name}.old-{tag}")
    tmp.mkdir()
    try:
        written = [Path(p).name for p in write(tmp)]
        owned = set(owned)
        if directory.exists():
            for entry in directory.iterdir():
                if entry.name not in owned and not (tmp / entry.name).exists():
                    _copy(entry, tmp / entry.name)  # the user's files stay
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if directory.exists():
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    return [os.fspath(given / name) for name in written]


def finish_interrupted_swap(directory: Path, remove_leftovers: bool = True) -> None:
    """Complete or undo a `replace_directory` that was interrupted, from the names it left.

    `<dir>.old-TAG` exists only once `<dir>.tmp-TAG` was complete, so with `<dir>` missing the swap
    is finished (the newest complete checkpoint wins); with `<dir>` present the leftovers go, when
    `remove_leftovers`. Reading a checkpoint passes False: a `<dir>.tmp-TAG` may be another
    process's save in progress (a training run writing the checkpoint being evaluated), and
    deleting it would make that save fail; the next save removes what is really left over.
    """
    if not directory.parent.is_dir():
        return
    for old in _swap_leftovers(directory, "old"):
        tmp = directory.with_name(f"{directory.name}.tmp-{old.name.rpartition('.old-')[2]}")
        if not directory.exists() and tmp.is_dir():
            os.replace(tmp, directory)
        if directory.exists() and remove_leftovers:
            shutil.rmtree(old, ignore_errors=True)
    if directory.exists() and remove_leftovers:
        for tmp in _swap_leftovers(directory, "tmp"):
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_leftovers(directory: Path, kind: str) -> list[Path]:
    # Only names replace_directory makes (`<dir>.old-` or `<dir>.tmp-` and an 8-hex tag): a user's
    # own `<dir>.old-backup` next to the checkpoint is not ours to delete.
    pattern = f"{glob.escape(directory.name)}.{kind}-" + "[0-9a-f]" * 8
    return [p for p in directory.parent.glob(pattern) if p.is_dir()]


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)
