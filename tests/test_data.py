"""Data: the synthetic generator, the augmentations, file datasets and their bad input.

References: the augmentations are checked against their definitions written out here (a mask's
rows/columns set to the mask value and nothing else; mixup's convex combination), the mixup weight
against scipy's Beta(10, 10), the noise-and-roll against torch.roll of the noisy copy.
"""

import json
import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ast_min.data import ClipDataset, Collator, MixupDataset, SyntheticDataset, draw_mask, mixup, noise_and_roll, spec_augment
from ast_min.data import synthetic
from ast_min.data.augment import draw_mixup_weight
from ast_min.features import samples_for_frames


# ---- the synthetic set -------------------------------------------------------------------------------------------------
def test_synthetic_is_deterministic_and_seeded():
    a, b = SyntheticDataset(20, seed=3), SyntheticDataset(20, seed=3)
    for i in (0, 7, 19):
        assert np.array_equal(a[i]["waveform"], b[i]["waveform"])
    c = SyntheticDataset(20, seed=4)
    assert not np.array_equal(a[5]["waveform"], c[5]["waveform"])
    # asked out of order, a clip is the same
    assert np.array_equal(SyntheticDataset(20, seed=3)[19]["waveform"], a[19]["waveform"])


def test_synthetic_clips_are_valid_and_balanced():
    dataset = SyntheticDataset(30, seed=1, num_frames=128)
    labels = [int(dataset[i]["target"].argmax()) for i in range(30)]
    assert sorted(set(labels)) == list(range(len(synthetic.CLASSES)))
    assert np.bincount(labels).tolist() == [3] * 10
    for i in range(30):
        item = dataset[i]
        w = item["waveform"]
        assert w.dtype == np.float32 and w.shape == (400 + 127 * 160,)
        assert np.isfinite(w).all() and 0 < np.abs(w).max() < 1.0  # -10 dB RMS at most: no clipping
        assert item["target"].sum() == 1.0


def test_synthetic_classes_have_their_spectral_signature():
    """Independent checks of what each class is meant to be, from the clip's own spectrum (numpy FFT)."""
    n = samples_for_frames(128)

    def spectrum(index):
        w, label = synthetic.make_clip(0, index, n)
        return np.abs(np.fft.rfft(w)) ** 2, label

    freqs = np.fft.rfftfreq(n, 1 / 16000)
    tone, label = spectrum(0)
    assert synthetic.CLASSES[label] == "pure_tone"
    assert tone.max() / tone.sum() > 0.3  # one sharp peak holds much of the energy
    pink, label = spectrum(4)
    white, _ = spectrum(3)
    assert synthetic.CLASSES[label] == "pink_noise"
    low, high = (freqs > 100) & (freqs < 1000), (freqs > 4000) & (freqs < 7000)
    # pink falls 3 dB/octave: low band power density well above the high band's; white is flat
    assert pink[low].mean() / pink[high].mean() > 4
    assert 0.5 < white[low].mean() / white[high].mean() < 2


def test_example_files_round_trip(tmp_path):
    paths = synthetic.write_examples(tmp_path)
    assert len(paths) == 10 and paths[1].endswith("rising_chirp.wav")
    assert len(synthetic.write_examples(tmp_path / "two", per_class=2, classes=("square_wave",))) == 2
    data, rate = sf.read(paths[1], dtype="float32")
    assert rate == 16000
    clip, _ = synthetic.make_clip(12345, 1)
    np.testing.assert_allclose(data, clip, atol=1 / 32768)  # 16-bit quantisation


def test_synthetic_bad_input():
    with pytest.raises(ValueError, match="at least one clip"):
        SyntheticDataset(0)
    with pytest.raises(ValueError, match="400-sample frame"):
        synthetic.make_clip(0, 0, 100)


# ---- SpecAugment -------------------------------------------------------------------------------------------------------
@settings(max_examples=40)
@given(st.integers(1, 40), st.integers(16, 64), st.integers(0, 30), st.integers(0, 60), st.integers(0, 2**32 - 1))
def test_spec_augment_masks_exactly_the_drawn_bands(frames, bins, freqm, timem, seed):
    features = torch.randn(frames, bins) + 5.0  # no element is 0 before masking
    masked, fmask, tmask = spec_augment(features, np.random.default_rng(seed), freqm, timem)
    assert 0 <= fmask.width <= max(freqm - 1, 0) and fmask.start + fmask.width <= bins
    assert 0 <= tmask.width <= max(timem - 1, 0) and tmask.start + tmask.width <= frames
    expected = features.clone()
    expected[:, fmask.start : fmask.start + fmask.width] = 0.0
    expected[tmask.start : tmask.start + tmask.width] = 0.0
    assert torch.equal(masked, expected)
    assert int((masked == 0).sum()) == frames * fmask.width + tmask.width * bins - fmask.width * tmask.width
    assert features.min() > 0  # the input is not modified in place


def test_mask_widths_follow_torchaudios_rule():
    # torchaudio: width = int(U[0, 1) * max_width) -> uniform on {0 .. max_width - 1}
    rng = np.random.default_rng(0)
    widths = np.array([draw_mask(rng, 8, 100).width for _ in range(4000)])
    counts = np.bincount(widths, minlength=8)
    assert counts.size == 8 and widths.max() == 7
    assert stats.chisquare(counts).pvalue > 1e-3
    assert draw_mask(rng, 0, 10).width == 0
    with pytest.raises(ValueError, match=">= 0"):
        draw_mask(rng, -1, 10)


# ---- mixup, noise and roll -------------------------------------------------------------------------------------------
@settings(max_examples=30)
@given(st.integers(400, 3000), st.integers(400, 3000), st.floats(0, 1), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_mixup_is_the_convex_combination_of_centred_waveforms(n1, n2, lam, num_classes, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(n1).astype(np.float32) + 0.3, rng.standard_normal(n2).astype(np.float32)
    tx, ty = np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, 2)]
    mixed, target = mixup(x, tx, y, ty, lam)
    # float64 reference: the other clip zero-padded or cut to the first's length, both mean-removed
    y_fit = np.zeros(n1)
    y_fit[: min(n1, n2)] = (y.astype(np.float64) - y.mean(dtype=np.float64))[: min(n1, n2)]
    expected = lam * (x - x.mean(dtype=np.float64)) + (1 - lam) * y_fit
    np.testing.assert_allclose(mixed, expected, atol=1e-5)  # float32 result of O(1) values
    assert mixed.shape == (n1,)
    assert target.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(target, lam * tx + (1 - lam) * ty, atol=1e-7)


def test_mixup_weight_is_beta_10_10():
    rng = np.random.default_rng(1)
    draws = [draw_mixup_weight(rng) for _ in range(2000)]
    assert stats.kstest(draws, stats.beta(10, 10).cdf).pvalue > 1e-3


def test_mixup_dataset_mixes_with_the_given_probability():
    base = SyntheticDataset(40, seed=0, num_frames=16)
    always, never = MixupDataset(base, mixup=1.0, seed=5), MixupDataset(base, mixup=0.0)
    for i in range(10):
        assert np.array_equal(never[i]["waveform"], base[i]["waveform"])
        item = always[i]
        assert item["target"].sum() == pytest.approx(1.0, abs=1e-6)
    always.set_epoch(1)
    assert not np.array_equal(always[3]["waveform"], MixupDataset(base, mixup=1.0, seed=5)[3]["waveform"])
    with pytest.raises(ValueError, match="probability"):
        MixupDataset(base, mixup=1.5)


@settings(max_examples=20)
@given(st.integers(1, 50), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_noise_and_roll(frames, bins, seed):
    features = torch.randn(frames, bins)
    out = noise_and_roll(features, np.random.default_rng(seed))
    # replay the generator: noise uniform[0, 1) scaled by u / 10, then a shift in [-10, 10)
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.random((frames, bins), dtype=np.float32)) * (float(rng.random()) / 10)
    shift = int(rng.integers(-10, 10))
    assert -10 <= shift < 10
    torch.testing.assert_close(out, torch.roll(features + noise, shift, 0), rtol=0, atol=0)
    delta = torch.roll(out, -shift, 0) - features
    assert delta.min() >= 0 and delta.max() < 0.1 + 1e-6


# ---- file datasets ---------------------------------------------------------------------------------------------------------
def _write(path, seconds=0.1, rate=16000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, np.random.default_rng(len(path)).uniform(-0.5, 0.5, int(seconds * rate)), rate)


def test_folder_dataset(tmp_path):
    for name in ("dog", "rain"):
        for k in range(2):
            _write(str(tmp_path / name / f"{k}.wav"))
    (tmp_path / "dog" / "notes.txt").write_text("not audio")
    dataset = ClipDataset.from_folder(tmp_path)
    assert dataset.labels == ("dog", "rain") and len(dataset) == 4 and not dataset.multi_label
    item = dataset[3]
    assert item["target"].tolist() == [0.0, 1.0] and item["waveform"].dtype == np.float32


def test_json_manifest_of_the_original_repo(tmp_path):
    _write(str(tmp_path / "a.wav"))
    _write(str(tmp_path / "b.wav"))
    (tmp_path / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n0,/m/09x0r,\"Speech\"\n1,/m/05zppz,\"Male speech, man speaking\"\n2,/m/0ytgt,Child speech\n"
    )
    manifest = {"data": [{"wav": "a.wav", "labels": "/m/09x0r,/m/05zppz"}, {"wav": str(tmp_path / "b.wav"), "labels": "/m/0ytgt"}]}
    (tmp_path / "train.json").write_text(json.dumps(manifest))
    dataset = ClipDataset.from_manifest(tmp_path / "train.json", class_labels=tmp_path / "class_labels_indices.csv")
    assert dataset.multi_label and dataset.labels == ("/m/09x0r", "/m/05zppz", "/m/0ytgt")
    assert dataset.id2label[1] == "Male speech, man speaking"
    assert dataset[0]["target"].tolist() == [1.0, 1.0, 0.0]
    assert dataset[1]["target"].tolist() == [0.0, 0.0, 1.0]


def test_csv_manifest(tmp_path):
    _write(str(tmp_path / "x.flac"))
    (tmp_path / "m.csv").write_text('file,labels\nx.flac,"cat,dog"\nx.flac,dog\n')
    dataset = ClipDataset.from_manifest(tmp_path / "m.csv")
    assert dataset.labels == ("cat", "dog") and dataset.multi_label
    assert dataset[0]["target"].tolist() == [1.0, 1.0]
    # an evaluation manifest takes the training set's label list, even if it names fewer labels
    (tmp_path / "e.csv").write_text("path,labels\nx.flac,dog\n")
    assert ClipDataset.from_manifest(tmp_path / "e.csv", labels=["cat", "dog"])[0]["target"].tolist() == [0.0, 1.0]


def test_unknown_label_is_a_clear_error(tmp_path):
    (tmp_path / "class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/a,A\n")
    (tmp_path / "m.json").write_text(json.dumps({"data": [{"wav": "a.wav", "labels": "/m/a,/m/zzz"}]}))
    with pytest.raises(ValueError, match="not in the label list: '/m/zzz'"):
        ClipDataset.from_manifest(tmp_path / "m.json", class_labels=tmp_path / "class_labels_indices.csv")


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders"):
        ClipDataset.from_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    with pytest.raises(ValueError, match="hold no audio files"):
        ClipDataset.from_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no dataset folder"):
        ClipDataset.from_folder(tmp_path / "nope")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("m.json", "{not json", "not valid JSON"),
        ("m.json", '{"data": [{"file": "a.wav"}]}', "\"wav\" and \"labels\""),
        ("m.csv", "name,kind\na.wav,x\n", "needs a header"),
        ("m.txt", "a.wav dog", ".json or .csv"),
        ("m.json", '{"data": []}', "no audio files"),
    ],
)
def test_bad_manifests(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        ClipDataset.from_manifest(tmp_path / name)


def test_unreadable_file_is_skipped_with_a_warning_and_counted(tmp_path):
    _write(str(tmp_path / "dog" / "good.wav"))
    (tmp_path / "dog" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    dataset = ClipDataset.from_folder(tmp_path)
    items = []
    with pytest.warns(UserWarning, match="skipping unusable audio file .*broken.wav"):
        items = [dataset[i] for i in range(len(dataset))]
    assert sum(item is None for item in items) == 1 and dataset.num_skipped == 1
    assert dataset.skipped_files[0].endswith("broken.wav")


def test_readable_but_unusable_files_are_skipped_by_name_and_counted(tmp_path):
    # A clip of 1 sample (no 25 ms frame) and one with a NaN sample decode fine: the dataset must
    # skip them like undecodable files, naming each file, never fail a batch with "clip 1 has ...".
    _write(str(tmp_path / "dog" / "good.wav"))
    sf.write(tmp_path / "dog" / "one_sample.wav", np.zeros(1, np.float32), 16000)
    nan = np.zeros(4000, np.float32)
    nan[7] = np.nan
    sf.write(tmp_path / "dog" / "nan.wav", nan, 16000, subtype="FLOAT")
    os.mkfifo(tmp_path / "dog" / "pipe.wav")  # would block for ever if opened
    dataset = ClipDataset.from_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[i] for i in range(len(dataset))] + [dataset[i] for i in range(len(dataset))]
    assert sorted(os.path.basename(f) for f in dataset.skipped_files) == ["nan.wav", "one_sample.wav", "pipe.wav"]
    assert sum(item is None for item in items) == 6 and dataset.num_skipped == 3  # counted once per file
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3  # warned once per file, not per epoch
    assert any("one_sample.wav" in m and "shorter than one 25 ms frame" in m for m in messages), messages
    assert any("nan.wav" in m and "NaN or Inf samples" in m for m in messages), messages
    assert any("pipe.wav" in m and "not a regular file" in m for m in messages), messages


def test_the_one_frame_bound_is_the_front_ends_at_any_rate(tmp_path):
    # The front end's frames are 400 samples whatever the rate: at 8 kHz a 300-sample file (37.5 ms,
    # longer than 25 ms) has no frame and must be skipped by name, not refused inside a batch.
    _write(str(tmp_path / "dog" / "short.wav"), seconds=300 / 8000, rate=8000)
    _write(str(tmp_path / "dog" / "long.wav"), seconds=400 / 8000, rate=8000)
    dataset = ClipDataset.from_folder(tmp_path, sampling_rate=8000)
    with pytest.warns(UserWarning, match=r"short.wav' lasts 37.5 ms, shorter than one 50 ms frame \(400 samples at 8 kHz\)"):
        items = [dataset[i] for i in range(len(dataset))]
    assert [os.path.basename(f) for f in dataset.skipped_files] == ["short.wav"]
    assert [len(item["waveform"]) for item in items if item is not None] == [400]


class _PassThrough:
    """A stand-in front end: frames are the waveform cut into rows, so the test sees what the collator did."""

    sampling_rate, max_length = 16000, 4

    def __call__(self, waveforms, sampling_rate, return_tensors):
        assert sampling_rate == 16000 and return_tensors == "pt"

        class Out:
            input_values = torch.stack([torch.as_tensor(w[:880]).reshape(4, 220) for w in waveforms])

        return Out()


def test_collator_drops_unreadable_items_and_cuts_clips():
    dataset = SyntheticDataset(3, num_frames=10)
    collate = Collator(_PassThrough())
    batch = collate([dataset[0], None, dataset[2]])
    assert batch["input_values"].shape == (2, 4, 220)
    assert batch["index"].tolist() == [0, 2] and batch["targets"].shape == (2, 10)
    assert batch["dropped"] == 1  # the count reaches the training loop even from a DataLoader worker
    assert collate([None, None]) == {"dropped": 2}
    # The train path: each clip masked by spec_augment drawing from its own generator
    # clip_rng(seed, epoch, index, _MASKS), whatever else is in the batch (and without a warning).
    from ast_min.data.pipeline import _MASKS, clip_rng

    augment = Collator(_PassThrough(), train=True, freqm=10, timem=2, seed=7)
    augment.set_epoch(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masked = augment([dataset[1], dataset[2]])["input_values"]
    plain = collate([dataset[1], dataset[2]])["input_values"]
    for row, index in enumerate((1, 2)):
        expected = spec_augment(plain[row], clip_rng(7, 3, index, _MASKS), 10, 2)[0]
        assert torch.equal(masked[row], expected)
    assert torch.equal(augment([dataset[2]])["input_values"][0], masked[1])
    assert not torch.equal(masked, plain)  # the draws did mask something


def test_collator_masks_fill_with_the_originals_zero_in_normalised_units():
    # The original masks the log-mel with 0 before normalising; after (x - mean) / (2 std) that
    # cell holds -mean / (2 std), here (4 - 0) / 8 = 0.5, not the 0 of the normalised features.
    from ast_min import ASTFeatureExtractor
    from ast_min.data.pipeline import _MASKS, clip_rng

    extractor = ASTFeatureExtractor(num_mel_bins=32, max_length=32, mean=-4.0, std=4.0)
    dataset = SyntheticDataset(4, num_frames=32)
    collate = Collator(extractor, train=True, freqm=12, timem=12, seed=5)
    collate.set_epoch(2)
    masked = collate([dataset[i] for i in range(4)])["input_values"]
    plain = Collator(extractor)([dataset[i] for i in range(4)])["input_values"]
    cells = 0
    for i in range(4):
        _, freq, time = spec_augment(plain[i], clip_rng(5, 2, i, _MASKS), 12, 12)
        hit = torch.zeros(32, 32, dtype=torch.bool)
        hit[:, freq.start : freq.start + freq.width] = True
        hit[time.start : time.start + time.width, :] = True
        assert (masked[i][hit] == 4.0 / (2 * 4.0)).all()
        assert torch.equal(masked[i][~hit], plain[i][~hit])
        cells += int(hit.sum())
    assert cells > 0  # the draws did mask something


def test_balanced_sampler_draws_in_proportion_to_the_weights_and_splits_across_ranks():
    from ast_min.data.pipeline import WeightedDistributedSampler, balanced_weights

    # Class 0 on 6 clips, class 1 on 2, one clip with both: by the original's rule a label weighs
    # 1000 / (count + 0.01) and a clip the sum of its labels' weights.
    targets = [[0]] * 5 + [[1]] + [[0, 1]]
    weights = balanced_weights(targets, 2)
    w0, w1 = 1000 / 6.01, 1000 / 2.01
    np.testing.assert_allclose(weights.numpy(), [w0] * 5 + [w1] + [w0 + w1])
    sampler = WeightedDistributedSampler(weights, seed=3)
    draws = []
    for epoch in range(3000):
        sampler.set_epoch(epoch)
        draws += list(sampler)
    counts = np.bincount(draws, minlength=7)
    expected = weights.numpy() / weights.sum().item() * len(draws)
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # two ranks split the single-process draws of an epoch between them
    ranks = [WeightedDistributedSampler(weights, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(5)
    both = sorted(list(ranks[0]) + list(ranks[1]))
    generator = torch.Generator().manual_seed(8)
    assert both == sorted(torch.multinomial(weights, 8, replacement=True, generator=generator).tolist())
    assert len(ranks[0]) == 4
    with pytest.raises(ValueError, match="non-negative"):
        WeightedDistributedSampler(torch.tensor([-1.0, 2.0]))
