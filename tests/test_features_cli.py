"""`ast-min features`: files in, the same features as transformers' extractor on the decoded audio out."""

import os

import numpy as np
import pytest
import soundfile
from test_features_extractor import run_transformers, to_log_mel, transformers_extractor
from test_features import assert_energy_close

from ast_min import features as F
from ast_min.cli import main
from ast_min.extractor import ASTFeatureExtractor


def test_features_command_writes_the_batch_and_summarises_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    short = (rng.standard_normal(16000 * 2) * 0.1).astype(np.float32)
    long = (rng.standard_normal(16000 * 11) * 0.1).astype(np.float32)
    soundfile.write(tmp_path / "short.wav", short, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "long.flac", np.stack([long, long], axis=1), 16000, subtype="PCM_24")  # stereo
    out = tmp_path / "x.npy"
    assert main(["features", str(tmp_path / "short.wav"), str(tmp_path / "long.flac"), "--out", str(out),
                 "--max-length", "512"]) == 0
    saved = np.load(out)
    assert saved.shape == (2, 512, 128) and saved.dtype == np.float32
    decoded = [short, soundfile.read(tmp_path / "long.flac", dtype="float32")[0].mean(axis=1)]
    expected = run_transformers(transformers_extractor(max_length=512), decoded)
    for clip, a, e in zip(decoded, saved, expected):
        t = min(F.num_frames(len(clip)), 512)
        np.testing.assert_allclose(a[t:], e[t:], rtol=2e-7)
        assert_energy_close(to_log_mel(a[:t], True, F.AUDIOSET_MEAN, F.AUDIOSET_STD),
                            to_log_mel(e[:t], True, F.AUDIOSET_MEAN, F.AUDIOSET_STD))
    printed = capsys.readouterr().out
    assert "198/198" in printed and "512/1098" in printed and "truncated" in printed and "512x128" in printed


def test_features_command_reads_a_preprocessor_config_and_reports_bad_files(tmp_path, capsys):
    ASTFeatureExtractor(num_mel_bins=64, max_length=100, do_normalize=False).save_pretrained(tmp_path)
    soundfile.write(tmp_path / "a.wav", np.zeros(4000, np.float32), 16000)
    assert main(["features", str(tmp_path / "a.wav"), "--preprocessor", str(tmp_path), "--out", str(tmp_path / "o.npy")]) == 0
    saved = np.load(tmp_path / "o.npy")
    assert saved.shape == (1, 100, 64)
    assert np.all(saved[0, :23] == np.float32(np.log(F.LOG_FLOOR)))  # silence: every bin at the log floor
    assert main(["features", str(tmp_path / "missing.wav")]) == 2
    assert "no audio file at" in capsys.readouterr().err
    soundfile.write(tmp_path / "tiny.wav", np.zeros(100, np.float32), 16000)
    assert main(["features", str(tmp_path / "tiny.wav")]) == 2
    err = capsys.readouterr().err
    assert "tiny.wav' lasts 6.2 ms, shorter than one 25 ms frame" in err and "clip 0" not in err


def test_out_without_npy_prints_the_path_numpy_writes(tmp_path, capsys):
    soundfile.write(tmp_path / "a.wav", np.zeros(4000, np.float32), 16000)
    assert main(["features", str(tmp_path / "a.wav"), "--out", str(tmp_path / "feat"), "--max-length", "50"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["a.wav", "feat.npy"]  # no "feat", no temporary file left
    assert f"to {tmp_path / 'feat.npy'}" in capsys.readouterr().out
    assert np.load(tmp_path / "feat.npy").shape == (1, 50, 128)


@pytest.mark.parametrize("where", ["missing_folder", "read_only", "directory"])
def test_an_unusable_out_is_refused_before_any_file_is_read(tmp_path, capsys, monkeypatch, where):
    soundfile.write(tmp_path / "a.wav", np.zeros(4000, np.float32), 16000)
    out = {"missing_folder": tmp_path / "nope" / "x.npy", "read_only": tmp_path / "ro" / "x.npy",
           "directory": tmp_path / "d.npy"}[where]
    if where == "read_only":
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o500)
        if os.access(tmp_path / "ro", os.W_OK):  # root ignores permissions: simulate the check's answer
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path / "ro") else real_access(p, mode))
    if where == "directory":
        (tmp_path / "d.npy").mkdir()

    import ast_min.commands.features as cli_module

    def no_loading(*args, **kwargs):
        raise AssertionError("a file was read before --out was checked")

    monkeypatch.setattr(cli_module, "load_audio", no_loading)
    assert main(["features", str(tmp_path / "a.wav"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and {"missing_folder": "does not exist", "read_only": "not writable",
                                "directory": "is a directory"}[where] in err, err
    assert "Traceback" not in err and "AssertionError" not in err


def test_nan_samples_are_reported_by_file_name(tmp_path, capsys):
    clip = np.zeros(4000, np.float32)
    clip[10] = np.inf
    soundfile.write(tmp_path / "ok.wav", np.zeros(4000, np.float32), 16000)
    soundfile.write(tmp_path / "broken.wav", clip, 16000, subtype="FLOAT")
    assert main(["features", str(tmp_path / "ok.wav"), str(tmp_path / "broken.wav")]) == 2
    err = capsys.readouterr().err
    assert "broken.wav' has NaN or Inf samples" in err and "clip " not in err, err


@pytest.mark.parametrize("argv, message", [(["--std", "0"], "--std must be a positive"), (["--std", "inf"], "--std"),
                                           (["--mean", "nan"], "--mean must be a finite"),
                                           (["--num-mel-bins", "0"], "--num-mel-bins")])
def test_bad_normalisation_options_name_the_option(tmp_path, capsys, argv, message):
    soundfile.write(tmp_path / "a.wav", np.zeros(4000, np.float32), 16000)
    assert main(["features", str(tmp_path / "a.wav"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_size_the_machine_cannot_allocate_is_one_line_not_a_traceback(tmp_path, capsys):
    # 1024 frames of 10**12 mel bins is petabytes: numpy refuses the allocation at once with MemoryError
    soundfile.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = tmp_path / "feat.npy"
    code = main(["features", str(tmp_path / "a.wav"), "--num-mel-bins", str(10**12), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "out of memory" in err and "--num-mel-bins" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_saving_over_a_file_keeps_its_permissions(tmp_path, capsys):
    """numpy.save over an existing file keeps its mode; so must the rename that replaces it here."""
    import os
    import stat

    soundfile.write(tmp_path / "a.wav", np.zeros(4000, np.float32), 16000)
    out = tmp_path / "f.npy"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    assert main(["features", str(tmp_path / "a.wav"), "--out", str(out)]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600 and np.load(out).shape == (1, 1024, 128)
    umask = os.umask(0o022)
    try:
        assert main(["features", str(tmp_path / "a.wav"), "--out", str(tmp_path / "new.npy")]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "new.npy").st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "f.npy", "new.npy"]  # no staging file left
