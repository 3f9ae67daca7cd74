"""The model shipped in ast_min/default_model: complete, loadable by transformers, and accurate.

It was trained by `ast-min train --recipe synthetic` on the synthetic set's seeds 0 (training) and
1 (model selection), ten classes and `other` in realistic recording conditions, some clips shorter
than the window. Here it is scored on a freshly seeded set it has never seen (seed 20261125), with
the front end and the normalisation statistics stored beside it, as `ast-min classify` uses it. The realistic conditions themselves are
checked against what they claim (SNR, reverberation decay, clipping, codec) at the end.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ast_min
from ast_min.data import SyntheticDataset, synthetic
from ast_min.features import samples_for_frames
from ast_min.recipes import get_recipe

DEFAULT = Path(ast_min.__file__).parent / "default_model"
EXAMPLES = Path(__file__).parents[1] / "examples"
HELD_OUT_SEED = 20261125
OTHER_RECALL_FLOOR = 0.675  # of held-out `other` clips answered `other`: see test_none_of_these_sounds_are_called_other
RECIPE_DATA = get_recipe("synthetic").synthetic  # the synthetic set's options the model was trained with


@pytest.fixture(scope="module")
def shipped():
    model = ast_min.ASTForAudioClassification.from_pretrained(DEFAULT).eval()
    return model, ast_min.ASTFeatureExtractor.from_pretrained(DEFAULT)


def test_files_and_labels():
    files = {p.name: p.stat().st_size for p in DEFAULT.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "reference_history.json"} <= set(files)
    assert sum(files.values()) < 2**20  # it ships inside the wheel: the tiny architecture stays under 1 MB
    config = json.loads((DEFAULT / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    assert labels == list(synthetic.LABELS_WITH_OTHER) == [*synthetic.CLASSES, "other"]
    assert config["problem_type"] == "single_label_classification"
    pre = json.loads((DEFAULT / "preprocessor_config.json").read_text())
    # the front end must produce what the model was trained on: same frames and bins, the synthetic set's statistics
    assert (pre["max_length"], pre["num_mel_bins"]) == (config["max_length"], config["num_mel_bins"])
    assert pre["do_normalize"] and -10 < pre["mean"] < 0 and 1 < pre["std"] < 10


def _predict(model, front_end, waveforms) -> np.ndarray:
    x = front_end(list(waveforms), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        return torch.cat([model(batch).logits.argmax(-1) for batch in x.split(100)]).numpy()


def test_held_out_accuracy_of_the_ten_classes(shipped):
    """The ten classes in the conditions the model was trained for (a clip called `other` counts as
    wrong), and in the original clean conditions of the examples/ files."""
    model, front_end = shipped
    assert RECIPE_DATA == {"other": True, "realistic": True, "short": 0.15}
    n = samples_for_frames(model.config.max_length)
    other = synthetic.LABELS_WITH_OTHER.index("other")
    indices = [i for i in range(560) if i % len(synthetic.LABELS_WITH_OTHER) != other][:500]
    clips = [synthetic.make_clip(HELD_OUT_SEED, i, n, **RECIPE_DATA) for i in indices]
    accuracy = float(np.mean(_predict(model, front_end, (w for w, _ in clips)) == [label for _, label in clips]))
    # The model card's table (ast_min/default_model/README.md) has the accuracy measured on 1,000 clips
    # of another seed (at least 95 %). The floor here sits where a model as accurate as measured scores below it on these 500 clips with
    # probability about 1e-4 (scipy.stats.binom.cdf(468, 500, measured)), so a failure means the model,
    # the front end or the generator changed, not bad luck.
    assert accuracy >= 0.936, f"held-out accuracy on the ten classes {accuracy:.3f} (realistic conditions)"
    clean = SyntheticDataset(300, seed=HELD_OUT_SEED, num_frames=model.config.max_length)
    items = [clean[i] for i in range(len(clean))]
    accuracy = float(np.mean(_predict(model, front_end, (c["waveform"] for c in items)) == [c["target"].argmax() for c in items]))
    # Clean clips are easier than realistic ones (the model card's table has both). The floor is the recipe's
    # promise, 95 %; on 300 clips the binomial standard deviation sqrt(p (1 - p) / 300) is under 0.013 for
    # any accuracy p >= 0.95, so a model as accurate as the table's clean figure clears it by many of them.
    assert accuracy >= 0.95, f"held-out accuracy on the ten classes {accuracy:.3f} (clean conditions)"


def test_none_of_these_sounds_are_called_other(shipped):
    """Held-out clips of the `other` class (speech-like babble, noise bursts, mixtures, melodies, warbles)."""
    model, front_end = shipped
    other = synthetic.LABELS_WITH_OTHER.index("other")
    n = samples_for_frames(model.config.max_length)
    clips = [synthetic.make_clip(HELD_OUT_SEED, 11 * k + other, n, **RECIPE_DATA) for k in range(200)]
    assert all(label == other for _, label in clips)
    recall = float(np.mean(_predict(model, front_end, (w for w, _ in clips)) == other))
    # The documented rate: the model card's table has the recall measured on 1,000 clips of another seed.
    # The floor sits where a model with the measured recall falls below it on these 200 clips with
    # probability about 1e-4 (scipy.stats.binom.cdf(135, 200, measured)).
    assert recall >= OTHER_RECALL_FLOOR, f"'other' recall {recall:.3f} on 200 held-out none-of-these clips"


def test_held_out_accuracy_on_short_clips(shipped):
    """Held-out clips of the ten classes that are all shorter than the window (0.3 s up), which the
    front end pads with frames that hold no sound: the model was trained on such clips, so the padding
    does not turn them into one class (before, sub-second sounds came out as `pink_noise`, near-certain)."""
    model, front_end = shipped
    n = samples_for_frames(model.config.max_length)
    other = synthetic.LABELS_WITH_OTHER.index("other")
    indices = [i for i in range(340) if i % len(synthetic.LABELS_WITH_OTHER) != other][:300]
    clips = [synthetic.make_clip(HELD_OUT_SEED, i, n, **{**RECIPE_DATA, "short": 1.0}) for i in indices]
    assert all(w.size < n for w, _ in clips)
    predicted = _predict(model, front_end, (w for w, _ in clips))
    accuracy = float(np.mean(predicted == [label for _, label in clips]))
    # The model card's table (ast_min/default_model/README.md) has the accuracy on 1,000 such clips of
    # another seed; the floor sits where a model as accurate falls below it on these 300 with probability about 1e-4 (scipy.stats.binom.cdf(263, 300, measured)).
    assert accuracy >= 0.876, f"held-out accuracy on short clips of the ten classes {accuracy:.3f}"


def test_transformers_loads_the_shipped_checkpoint_and_agrees(shipped):
    transformers = pytest.importorskip("transformers")
    model, front_end = shipped
    theirs = transformers.ASTForAudioClassification.from_pretrained(DEFAULT, attn_implementation="eager").eval()
    clip = SyntheticDataset(3, seed=HELD_OUT_SEED, num_frames=model.config.max_length)[2]["waveform"]
    x = front_end([clip], sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        # float32 through the same few layers: differences are accumulation-order rounding (~1e-6)
        torch.testing.assert_close(model(x).logits, theirs(x).logits, rtol=1e-4, atol=1e-4)
    assert theirs.config.id2label[1] == "rising_chirp"


def test_example_files_are_classified_correctly(shipped):
    model, front_end = shipped
    files = sorted(EXAMPLES.glob("*.wav"))
    assert files, "examples/ should hold the examples/ files"
    for path in files:
        waveform = ast_min.load_audio(path)
        x = front_end([waveform], sampling_rate=16000, return_tensors="pt").input_values
        with torch.no_grad():
            label = model.config.id2label[int(model(x).logits.argmax())]
        assert path.stem.startswith(label), (path.name, label)


# ---- the realistic recording conditions do what they claim ------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.floats(-10.0, 40.0), st.integers(0, 2**32 - 1), st.sampled_from(["white", "pink", "brown"]))
def test_added_noise_has_the_requested_snr(snr_db, seed, colour):
    rng = np.random.default_rng(seed)
    clean = np.zeros(8000)
    clean[2000:5000] = np.sin(np.arange(3000) * 0.3) * rng.uniform(0.01, 1.0)
    span = slice(2000, 5000)
    noisy = synthetic.add_noise(clean, synthetic.background_noise(rng, 8000, colour), snr_db, reference=span)
    measured = 10 * np.log10(np.mean(clean[span] ** 2) / np.mean((noisy - clean)[span] ** 2))
    # float64 sums of a few thousand squares: relative error ~1e-13, far below 1e-6 dB
    assert abs(measured - snr_db) < 1e-6, (measured, snr_db)


@settings(max_examples=20, deadline=None)
@given(st.floats(0.1, 0.5), st.floats(3.0, 15.0), st.integers(0, 2**32 - 1))
def test_reverb_tail_decays_60_db_in_rt60_and_has_the_requested_drr(rt60, drr_db, seed):
    ir = synthetic.reverb_impulse_response(np.random.default_rng(seed), rt60, drr_db)
    assert ir[0] == 1.0 and ir.size == int(rt60 * 16000)
    tail = ir[1:]
    assert abs(10 * np.log10(1.0 / np.sum(tail**2)) - drr_db) < 1e-9  # direct-to-reverberant energy ratio
    # Energy of 10 ms windows, in dB, against time: a straight line of slope -60 / rt60 dB/s. Each
    # window's energy is a sum of 160 squared Gaussians (a chi-square: ~0.5 dB spread), so over the
    # >= 10 windows of a tail the fitted slope's standard error is < 0.3 % of the slope; 5 % is > 15 sigma.
    windows = tail[: tail.size // 160 * 160].reshape(-1, 160)  # (K, 160)
    energy_db = 10 * np.log10(np.sum(windows**2, axis=1))
    t = (np.arange(len(energy_db)) + 0.5) * 0.01
    slope = np.polyfit(t, energy_db, 1)[0]
    assert abs(slope / (-60 / rt60) - 1) < 0.05, (slope, -60 / rt60)
    # Convolution adds the tail: an impulse in a clip comes back as the impulse response, cut at the clip's end.
    x = np.zeros(4000)
    x[100] = 1.0
    expected = np.zeros(3900)
    expected[: min(ir.size, 3900)] = ir[:3900]
    np.testing.assert_allclose(synthetic.add_reverb(x, ir)[100:], expected, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 2.0), st.integers(0, 2**32 - 1))
def test_clipping_bounds_the_waveform_and_keeps_what_is_below(threshold, seed):
    x = np.random.default_rng(seed).standard_normal(4000)
    y = synthetic.clip_waveform(x, threshold)
    assert np.abs(y).max() <= threshold
    below = np.abs(x) <= threshold
    assert np.array_equal(y[below], x[below])
    assert np.array_equal(y[~below], threshold * np.sign(x[~below]))
    with pytest.raises(ValueError, match="clipping level"):
        synthetic.clip_waveform(x, 0.0)


def test_level_changes_stay_within_bounds_and_are_slow():
    for seed in range(20):
        gain_db = 20 * np.log10(synthetic.level_changes(np.random.default_rng(seed), 20000, max_db=6.0))
        assert np.abs(gain_db).max() <= 6.0 + 1e-9
        # piecewise linear between knots >= 20000 / 4 samples apart: at most 12 dB per 5000 samples
        assert np.abs(np.diff(gain_db)).max() <= 12.0 / 5000 + 1e-9


def test_codec_round_trip_is_lossy_deterministic_and_keeps_the_sound():
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    for quality in (0.3, 0.9):
        decoded = synthetic.codec_round_trip(tone, quality)
        assert decoded.shape == tone.shape
        snr = 10 * np.log10(np.sum(tone**2) / np.sum((decoded - tone) ** 2))
        # Lossy (not bit-exact: a finite SNR), but the tone survives well above its coding noise.
        assert 10 < snr < 80, snr
        assert np.array_equal(decoded, synthetic.codec_round_trip(tone, quality))


def test_realistic_clips_are_deterministic_bounded_and_cycle_through_eleven_classes():
    n = samples_for_frames(128)
    clips = [synthetic.make_clip(5, i, n, other=True, realistic=True) for i in range(22)]
    assert [label for _, label in clips] == list(range(11)) * 2
    for i in (0, 10, 21):
        assert np.array_equal(clips[i][0], synthetic.make_clip(5, i, n, other=True, realistic=True)[0])
    for w, _ in clips:
        assert w.dtype == np.float32 and w.shape == (n,) and np.isfinite(w).all() and 0 < np.abs(w).max() <= 0.9 + 1e-6
    dataset = SyntheticDataset(22, seed=5, other=True, realistic=True)
    assert dataset.labels == synthetic.LABELS_WITH_OTHER and dataset[21]["target"].argmax() == 10
    first = dataset[3]["waveform"]
    first[:] = 0  # a caller's change must not reach the dataset's cache
    assert np.array_equal(dataset[3]["waveform"], clips[3][0])


def test_short_clips_occur_at_the_requested_rate_within_their_bounds():
    """`short=p` makes a fraction p of clips shorter than the window, from SHORTEST_SECONDS up, and
    leaves what is inside a clip's span drawn as before; `short=0` keeps every clip at the window."""
    n = samples_for_frames(128)
    count, p = 2000, 0.25
    lengths = np.array([synthetic.recorded_length(7, i, n, p) for i in range(count)])
    short = lengths < n
    shortest = int(synthetic.SHORTEST_SECONDS * 16000)
    assert lengths.max() == n and lengths.min() >= shortest, (lengths.min(), lengths.max())
    # Binomial(2000, p): 4.5 standard deviations (sqrt(p (1 - p) / 2000) ~ 0.0097 at p = 0.25) either side.
    assert abs(short.mean() - p) < 4.5 * np.sqrt(p * (1 - p) / count), f"short fraction {short.mean():.4f}, asked {p}"
    # Uniform lengths: the short ones' mean lies mid-way between the bounds (4.5 standard errors of a uniform).
    spread = (n - shortest) / np.sqrt(12 * short.sum())
    assert abs(lengths[short].mean() - (n + shortest) / 2) < 4.5 * spread, lengths[short].mean()
    for i in np.flatnonzero(short)[:8]:  # make_clip and the dataset make clips of those lengths, still audible
        w, label = synthetic.make_clip(7, int(i), n, other=True, realistic=True, short=p)
        assert w.shape == (lengths[i],) and label == i % 11 and np.abs(w).max() > 0
        assert SyntheticDataset(int(i) + 1, seed=7, other=True, realistic=True, short=p)[int(i)]["waveform"].shape == w.shape
    assert all(synthetic.recorded_length(7, i, n, 0.0) == n for i in range(200))
    assert all(synthetic.make_clip(7, i, n, short=1.0)[0].size < n for i in range(20))
    with pytest.raises(ValueError, match="fraction of short clips"):
        SyntheticDataset(10, short=1.5)


def test_other_kinds_and_bad_input():
    rng = np.random.default_rng(0)
    for kind in synthetic.OTHER_KINDS:
        x = synthetic.other_event(kind, rng, 8000)
        assert x.shape == (8000,) and np.isfinite(x).all() and np.std(x) > 0, kind
    # clip_kind names what make_clip made, from the same draws: every kind turns up among 110 clips of `other`
    kinds = {synthetic.clip_kind(3, 11 * k + 10, other=True, realistic=True) for k in range(110)}
    assert kinds == set(synthetic.OTHER_KINDS)
    assert synthetic.clip_kind(3, 12, other=True, realistic=True) == "rising_chirp"
    with pytest.raises(ValueError, match="kinds are"):
        synthetic.other_event("birdsong", rng, 8000)
    with pytest.raises(ValueError, match="colour"):
        synthetic.background_noise(rng, 100, "blue")
    with pytest.raises(ValueError, match="reverberation time"):
        synthetic.reverb_impulse_response(rng, 0.0, 10.0)


def _periodic_fraction(x: np.ndarray) -> float:
    """Fraction of x's audible 64-ms frames that repeat at a voice's pitch period: an autocorrelation
    peak above 0.3 at a lag of 1/260 .. 1/85 s, widened by half an octave each way for intonation."""
    lo, hi = int(16000 / (260 * 2**0.5)), int(16000 / (85 / 2**0.5))
    periodic = audible = 0
    for start in range(0, x.size - 1024, 1024):
        frame = x[start : start + 1024]
        if np.std(frame) < 0.1 * np.std(x):  # a pause
            continue
        ac = np.correlate(frame, frame, "full")[1023:]  # lags 0..1023
        audible += 1
        periodic += ac[lo + int(np.argmax(ac[lo:hi]))] > 0.3 * ac[0]
    return periodic / audible


def test_speech_like_sounds_are_voiced_at_a_voice_pitch():
    """Independent check of the source-filter model: most of the babble is voiced at a voice's pitch,
    unlike noise. Fricatives and syllable boundaries make up the rest, so 'most' is a half."""
    for seed in range(5):
        speech = synthetic.other_event("speech", np.random.default_rng(seed), 20000)
        assert _periodic_fraction(speech) > 0.5, seed
        assert _periodic_fraction(np.random.default_rng(seed).standard_normal(20000)) < 0.1, seed
