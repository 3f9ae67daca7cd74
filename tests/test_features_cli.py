"""`ast-min features`: files in, the same features as transformers' extractor on the decoded audio out."""

import numpy as np
import soundfile
from test_features_extractor import run_transformers, to_log_mel, transformers_extractor
from test_features import assert_energy_close

from ast_min import features as F
from ast_min.cli import main


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
    F.ASTFeatureExtractor(num_mel_bins=64, max_length=100, do_normalize=False).save_pretrained(tmp_path)
    soundfile.write(tmp_path / "a.wav", np.zeros(4000, np.float32), 16000)
    assert main(["features", str(tmp_path / "a.wav"), "--preprocessor", str(tmp_path), "--out", str(tmp_path / "o.npy")]) == 0
    saved = np.load(tmp_path / "o.npy")
    assert saved.shape == (1, 100, 64)
    assert np.all(saved[0, :23] == np.float32(np.log(F.LOG_FLOOR)))  # silence: every bin at the log floor
    assert main(["features", str(tmp_path / "missing.wav")]) == 2
    assert "no audio file at" in capsys.readouterr().err
    soundfile.write(tmp_path / "tiny.wav", np.zeros(100, np.float32), 16000)
    assert main(["features", str(tmp_path / "tiny.wav")]) == 2
    assert f"clip 0 has 100 samples, fewer than one {F.FRAME_LENGTH}-sample (25 ms) frame" in capsys.readouterr().err
