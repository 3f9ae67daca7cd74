"""Checkpoint and result files: JSON with friendly errors, hub ids, and writes that are all-or-nothing.

Written once and shared by the config (`config.json`), the feature extractor
(`preprocessor_config.json`), the model (`model.safetensors`), the trainer's checkpoints and the
commands' result files, so that all of them find, read and write files the same way:

- `read_json_object` / `json_string` / `write_json`: a JSON object in, a sorted, indented one out;
  a missing, unreadable or non-object file is a FileNotFoundError or ValueError naming the file.
- `resolve`: a local directory or file is used as is; a hub id (`owner/name`) is downloaded with
  `huggingface_hub`, or taken from the local hub cache when offline; `subfolder=` selects a
  directory inside either.
- `replace_directory`: a checkpoint directory is written into `<directory>.tmp`, marked complete,
  and then swapped in, so an interruption leaves either the old checkpoint or the new one, never a
  mixture (`finish_interrupted_save`, `saved_directory` and `remove_directory` go with it).
- `check_output_file`, `new_file_beside`, `keep_mode`, `save_npy`: a result file (`--out`) is refused
  early when it names a directory, and written into a fresh file beside it that is renamed over it,
  with the permissions a plain write would have given it.
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


def json_string(value: dict | list) -> str:
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


def write_json(file: str | os.PathLike, value: dict | list) -> str:
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


def save_npy(out: str | os.PathLike, array) -> None:
    """numpy.save into a temporary file beside `out`, renamed over it once complete.

    The result has the permissions numpy.save's own file would have: those of the file it
    replaces, or the user's umask for a new one.
    """
    import numpy as np  # on use: the JSON and checkpoint helpers need no numpy

    tmp = new_file_beside(out, ".partial")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        keep_mode(tmp, out)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    path = saved_directory(path) or path  # mid-swap, the complete new copy; reading changes nothing
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
# A directory NAME is saved in six steps, any of which an interruption may follow:
#   1. finish or clear what an earlier, interrupted save left (`finish_interrupted_save`)
#   2. create NAME.tmp holding SAVE_MARKER, which says "incomplete": the folder is now known to be ast-min's
#   3. write the new files into NAME.tmp, and copy there the files of NAME the writer does not own
#   4. rewrite SAVE_MARKER to say "complete": NAME.tmp is now a whole checkpoint, newer than NAME
#   5. the swap: rename NAME -> NAME.old-TAG, then NAME.tmp -> NAME
#   6. remove SAVE_MARKER from NAME, then NAME.old-TAG
# After any step, NAME or a complete NAME.tmp holds a whole checkpoint. A reader takes NAME, or the
# complete NAME.tmp while the swap has left no NAME (`saved_directory`), and never changes anything:
# the next save (or a resumed training run) finishes the swap of a complete NAME.tmp and removes the
# rest. The marker is plain text rewritten in place: a rewrite cut short reads as incomplete.
SAVE_MARKER = ".ast-min-save"
_COMPLETE = "complete\n"


def replace_directory(directory: str | os.PathLike, write: Callable[[Path], Iterable[str]], owned: Iterable[str]) -> list[str]:
    """Write a checkpoint into `directory` atomically: `write(tmp)` fills `<directory>.tmp`, then it is swapped in.

    owned: the file names this kind of writer produces. Files of the old directory that are owned
    but not rewritten are dropped (a stale preprocessor_config.json would otherwise be read with
    new weights); files it does not own (a README, the user's notes) are carried over untouched.
    The steps, and what an interruption after each leaves, are listed above. One save at a time
    per directory. Returns the paths written, inside `directory`.
    """
    given, directory = Path(directory), Path(os.path.abspath(directory))  # "." and "x/.." name no sibling
    check_save_target(directory, given)
    directory.parent.mkdir(parents=True, exist_ok=True)
    finish_interrupted_save(directory)
    tmp = _tmp(directory)
    os.makedirs(tmp)
    _mark(tmp, "incomplete\n")
    try:
        written = [Path(p).name for p in write(tmp)]
        owned = {*owned, SAVE_MARKER}
        if directory.exists():
            for entry in directory.iterdir():
                if entry.name not in owned and not (tmp / entry.name).exists():
                    _copy(entry, tmp / entry.name)  # the user's files stay
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _mark(tmp, _COMPLETE)
    _swap_in(directory, tmp)
    return [os.fspath(given / name) for name in written]


def check_save_target(directory: str | os.PathLike, given: str | os.PathLike | None = None) -> None:
    """Refuse, before anything is written, a place `replace_directory` cannot save to.

    A file; the current directory or one holding it (the swap would rename this process's working
    directory away); a `<directory>.tmp` that no save made (it lacks SAVE_MARKER: a user's own folder).
    given: the path as the caller wrote it, for the messages.
    """
    directory = Path(os.path.abspath(directory))
    shown = os.fspath(directory if given is None else given)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{shown!r} is a file, not a directory: choose another place to save the checkpoint")
    if directory == Path.cwd() or directory in Path.cwd().parents:
        raise ValueError(
            f"{shown!r} is the current directory or holds it, and saving replaces the directory "
            "whole: save into a directory of its own, e.g. save_pretrained('my-model')"
        )
    tmp = _tmp(directory)
    if os.path.lexists(tmp) and not (tmp.is_dir() and not tmp.is_symlink() and (tmp / SAVE_MARKER).is_file()):
        raise ValueError(
            f"{os.fspath(tmp)!r} is in the way: saving {shown!r} writes there first, and no ast-min save made it "
            f"(it has no {SAVE_MARKER}); move it away, then save again"
        )


def finish_interrupted_save(directory: str | os.PathLike) -> None:
    """Complete the swap of a whole `<directory>.tmp` an interrupted save left, and remove every other leftover.

    A complete `<directory>.tmp` is newer than `<directory>`, so it replaces it; an incomplete one
    is removed, and so are the `<directory>.old-TAG` copies a swap or a removal left.
    """
    directory = Path(os.path.abspath(directory))
    check_save_target(directory)
    tmp = _tmp(directory)
    if _is_complete(tmp):
        _swap_in(directory, tmp)
    elif tmp.exists():
        shutil.rmtree(tmp)
    if (directory / SAVE_MARKER).is_file():  # the swap was cut short before its last step
        os.remove(directory / SAVE_MARKER)
    for old in _old_copies(directory):
        shutil.rmtree(old, ignore_errors=True)


def saved_directory(directory: str | os.PathLike) -> Path | None:
    """Where the checkpoint saved at `directory` is: itself, else (mid-swap) its complete `.tmp`; None if neither.

    Reading changes nothing: a `.tmp` may be another process's save in progress.
    """
    directory = Path(directory)
    if directory.exists():
        return directory
    return _tmp(directory) if _is_complete(_tmp(directory)) else None


def remove_directory(directory: str | os.PathLike) -> None:
    """Remove a checkpoint directory and what its saves left, so that no part of it is ever read as whole.

    It is renamed away first (to `<directory>.old-TAG`, which no reader takes), then deleted.
    """
    directory = Path(os.path.abspath(directory))
    check_save_target(directory)
    if _tmp(directory).exists():
        shutil.rmtree(_tmp(directory))
    if directory.exists():
        os.replace(directory, _new_old_copy(directory))
    for old in _old_copies(directory):
        shutil.rmtree(old, ignore_errors=True)


def _tmp(directory: Path) -> Path:
    return directory.with_name(directory.name + ".tmp")


def _new_old_copy(directory: Path) -> Path:
    return directory.with_name(f"{directory.name}.old-{uuid.uuid4().hex[:8]}")


def _mark(tmp: Path, text: str) -> None:
    with open(tmp / SAVE_MARKER, "w", encoding="utf-8") as f:
        f.write(text)


def _is_complete(tmp: Path) -> bool:
    try:
        return (tmp / SAVE_MARKER).read_text(encoding="utf-8") == _COMPLETE
    except (OSError, UnicodeDecodeError):
        return False


def _swap_in(directory: Path, tmp: Path) -> None:
    """Steps 5 and 6: the complete `tmp` becomes `directory`."""
    old = _new_old_copy(directory)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    os.remove(directory / SAVE_MARKER)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _old_copies(directory: Path) -> list[Path]:
    # Only the names this module makes (`<dir>.old-` and an 8-hex tag): a user's own
    # `<dir>.old-backup` next to the checkpoint is not ours to delete.
    pattern = f"{glob.escape(directory.name)}.old-" + "[0-9a-f]" * 8
    return [p for p in directory.parent.glob(pattern) if p.is_dir()]


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)
