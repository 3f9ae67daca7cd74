"""A synthetic sound-event dataset that needs no download: the data behind ast-min's embedded model.

Ten classes of sounds that a log-mel spectrogram tells apart by shape, not by a single number:

    pure_tone       one sine at a random frequency
    rising_chirp    a sine sweeping up (exponentially: a straight line on the mel axis)
    falling_chirp   the same sweeping down
    white_noise     flat spectrum
    pink_noise      1/f power spectrum (3 dB per octave down)
    click_train     impulses at a random rate (vertical lines in the spectrogram)
    am_tone         a sine fully amplitude-modulated at 4-8 Hz (a beating horizontal line)
    harmonic_stack  a fundamental and its first few harmonics, all of them (a comb)
    square_wave     odd harmonics only, falling as 1/k (a comb with every second tooth missing)
    tone_bursts     short sine pips separated by silence (a dashed horizontal line)

and, with `other=True`, an eleventh class `other` of sounds that are none of them, so that a model
trained on the set can say "none of these": speech-like babble from the source-filter model of the
voice, band-passed noise bursts, mixtures of two classes, melodies, warbles.

Every clip draws its event's frequency, duration, onset and gain, and a white-noise background at a
random signal-to-noise ratio, from `numpy.random.default_rng([seed, index])`: clip `i` of seed `s`
is the same on every machine and in every process, whatever order the clips are asked in, so a
held-out set is simply another seed. With `realistic=True` the clips are recorded in harsher
conditions drawn the same way: short events, level changes, coloured background noise at a random
SNR, a room's reverberation, clipping and a lossy codec (`make_clip` lists the ranges). With
`short=p` a fraction p of the clips is shorter than the window, as a short file is before the feature
extractor pads it. The embedded model's recipe (`ast-min train --recipe synthetic`) uses all three.

Shape legend: N samples (a clip is one 1-D float32 array at `SAMPLING_RATE`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ast_min.features import FRAME_LENGTH, SAMPLING_RATE, samples_for_frames

CLASSES = (
    "pure_tone",
    "rising_chirp",
    "falling_chirp",
    "white_noise",
    "pink_noise",
    "click_train",
    "am_tone",
    "harmonic_stack",
    "square_wave",
    "tone_bursts",
)

# Frequency range of tonal events. Above ~150 Hz so a 64-bin mel filterbank resolves them; the top
# leaves room for a few harmonics below the 8 kHz Nyquist frequency.
LOW_HZ, HIGH_HZ = 150.0, 3000.0


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink noise by shaping white noise's spectrum by 1/sqrt(f) (power 1/f)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0  # keep the DC bin finite; its weight hardly matters
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def _event(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """The clean event of class `name`, `n` samples long, not yet scaled."""
    t = np.arange(n) / SAMPLING_RATE
    if name == "pure_tone":
        return np.sin(2 * np.pi * _log_uniform(rng, LOW_HZ, HIGH_HZ) * t + rng.uniform(0, 2 * np.pi))
    if name in ("rising_chirp", "falling_chirp"):
        # At least an octave and a half of sweep, so the slope shows within the shortest event.
        f0 = _log_uniform(rng, LOW_HZ, HIGH_HZ / 3)
        f1 = f0 * _log_uniform(rng, 3.0, HIGH_HZ / f0)
        if name == "falling_chirp":
            f0, f1 = f1, f0
        duration = n / SAMPLING_RATE
        k = np.log(f1 / f0) / duration  # exponential sweep: f(t) = f0 exp(k t)
        return np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    if name == "white_noise":
        return rng.standard_normal(n)
    if name == "pink_noise":
        return _pink(rng, n)
    if name == "click_train":
        x = np.zeros(n)
        period = int(SAMPLING_RATE / rng.uniform(4.0, 25.0))
        # The first click falls within the event even when the event is shorter than one period (a short
        # clip); for events longer than a period this is the same draw as always.
        x[rng.integers(0, min(period, n)) :: period] = 1.0
        return x
    if name == "am_tone":
        carrier = np.sin(2 * np.pi * _log_uniform(rng, LOW_HZ, HIGH_HZ) * t)
        # Deep and slow: a rate near 10 Hz would repeat once per 10-frame patch stride and hide in every patch alike.
        depth, rate = rng.uniform(0.9, 1.0), rng.uniform(4.0, 8.0)
        return carrier * (1 - depth * 0.5 * (1 + np.cos(2 * np.pi * rate * t)))
    if name == "harmonic_stack":
        f0 = _log_uniform(rng, LOW_HZ, HIGH_HZ / 4)
        count = int(min(rng.integers(4, 8), (SAMPLING_RATE / 2 - 100) // f0))
        return sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in range(1, count + 1))
    if name == "square_wave":
        f0 = _log_uniform(rng, LOW_HZ, HIGH_HZ / 2)
        # A band-limited square wave: odd harmonics at 1/k below Nyquist (no aliasing to blur the comb).
        ks = np.arange(1, int((SAMPLING_RATE / 2 - 100) // f0) + 1, 2)
        return (np.sin(2 * np.pi * f0 * ks[:, None] * t) / ks[:, None]).sum(axis=0)
    if name == "tone_bursts":
        tone = np.sin(2 * np.pi * _log_uniform(rng, LOW_HZ, HIGH_HZ) * t)
        period = rng.uniform(0.12, 0.3)  # seconds per burst + gap
        on = rng.uniform(0.3, 0.6)  # duty cycle
        return tone * ((t / period) % 1.0 < on)
    raise ValueError(f"unknown synthetic class {name!r}; the classes are {', '.join(CLASSES)}")


# ---- the "none of these" class ------------------------------------------------------------------------------------------
OTHER = "other"
LABELS_WITH_OTHER = CLASSES + (OTHER,)
# What the `other` class is made of: sounds a log-mel spectrogram shows to be none of the ten classes.
OTHER_KINDS = ("speech", "noise_bursts", "mixture", "melody", "warble")

# Average formant frequencies (F1, F2, F3) in Hz of ten English vowels spoken by men (Peterson & Barney,
# J. Acoust. Soc. Am. 24, 1952, table II); a speaker factor scales them for shorter vocal tracts.
VOWEL_FORMANTS = (
    (270, 2290, 3010), (390, 1990, 2550), (530, 1840, 2480), (660, 1720, 2410), (520, 1190, 2390),
    (730, 1090, 2440), (570, 840, 2410), (440, 1020, 2240), (300, 870, 2240), (490, 1350, 1690),
)
FORMANT_BANDWIDTHS = (60.0, 90.0, 150.0)  # Hz: typical F1-F3 bandwidths of a male voice


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """A two-pole resonance at `freq` Hz (a formant): poles at radius exp(-pi B / fs), angle 2 pi F / fs."""
    from scipy.signal import lfilter

    r, theta = np.exp(-np.pi * bandwidth / SAMPLING_RATE), 2 * np.pi * freq / SAMPLING_RATE
    return lfilter([1.0 - r], [1.0, -2 * r * np.cos(theta), r * r], x)


def _envelope(n: int, attack: int, release: int) -> np.ndarray:
    """Raised-cosine attack and release of `attack` and `release` samples, flat between (n,)."""
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    if attack:
        env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    if release:
        env[n - release :] = (0.5 - 0.5 * np.cos(np.pi * np.arange(release) / release))[::-1]
    return env


def _bandpass_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    high = min(high, 0.95 * SAMPLING_RATE / 2)
    sos = butter(2, [low, max(high, low * 1.1)], btype="bandpass", fs=SAMPLING_RATE, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


def _speech(rng: np.random.Generator, n: int) -> np.ndarray:
    """Speech-like babble from the source-filter model of the voice (Fant 1960).

    Source: a glottal pulse train whose pitch follows a slow random intonation contour with
    declination, tilted -6 dB/octave by a one-pole low-pass. Filter: three formant resonators whose
    frequencies jump from vowel to vowel, syllable by syllable. Between syllables: pauses and
    fricatives (high band-passed noise), so the result has the syllabic rhythm of speech.
    """
    from scipy.signal import lfilter

    t = np.arange(n) / SAMPLING_RATE
    knots = rng.uniform(-4.0, 4.0, size=6)  # semitones around the speaker's mean pitch
    semitones = np.interp(t, np.linspace(0, t[-1], knots.size), knots) - 2.0 * t / max(t[-1], 1e-9)
    f0 = _log_uniform(rng, 85.0, 260.0) * 2 ** (semitones / 12)  # (n,) Hz
    cycles = np.cumsum(f0) / SAMPLING_RATE
    pulses = np.diff(np.floor(cycles), prepend=0.0)  # 1 at the start of each glottal period
    source = lfilter([1.0], [1.0, -0.95], pulses) + 0.02 * rng.standard_normal(n)  # + aspiration
    speaker = rng.uniform(1.0, 1.25)  # formant scale: 1 for a man's vocal tract, ~1.2 for a child's
    out, pos = np.zeros(n), int(rng.integers(0, SAMPLING_RATE // 10))
    while pos < n:
        kind = rng.choice(3, p=(0.7, 0.15, 0.15))  # vowel, fricative, pause
        length = int(SAMPLING_RATE * (rng.uniform(0.08, 0.3) if kind == 0 else rng.uniform(0.04, 0.15)))
        length = min(length, n - pos)
        if kind == 0:
            segment = source[pos : pos + length]
            for freq, bandwidth in zip(VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))], FORMANT_BANDWIDTHS):
                segment = _resonator(segment, freq * speaker, bandwidth)
            segment = segment / (np.sqrt(np.mean(segment**2)) + 1e-12)
        elif kind == 1:
            segment = 0.3 * _bandpass_noise(rng, length, rng.uniform(2500, 4000), 7600)
            segment = 0.3 * segment / (np.sqrt(np.mean(segment**2)) + 1e-12)
        else:
            segment = np.zeros(length)
        out[pos : pos + length] += segment * _envelope(length, 160, 320)
        pos += length
    return out


def _noise_bursts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Knocks, rustles and hisses: 2-8 band-passed noise bursts, each decaying exponentially."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(2, 9))):
        length = min(n, int(SAMPLING_RATE * rng.uniform(0.02, 0.25)))
        start = int(rng.integers(0, n - length + 1))
        centre, width = _log_uniform(rng, 200.0, 5000.0), rng.uniform(0.1, 0.7)  # width: octaves either side
        burst = _bandpass_noise(rng, length, centre * 2**-width, centre * 2**width)
        burst *= np.exp(-np.arange(length) / (length / 4)) * _envelope(length, 32, 32)
        out[start : start + length] += burst / (np.sqrt(np.mean(burst**2)) + 1e-12) * 10 ** (rng.uniform(-10, 0) / 20)
    return out


def _mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two different tonal or impulsive classes at levels within 3 dB of each other.

    The two noise classes are left out: a tone over a noise 3 dB louder is, to the ear and to the
    spectrogram, a noisy tone, which the ten classes' own backgrounds already cover."""
    pool = [c for c in CLASSES if c not in ("white_noise", "pink_noise")]
    first, second = rng.choice(len(pool), size=2, replace=False)
    a, b = _event(pool[first], rng, n), _event(pool[second], rng, n)
    a /= np.sqrt(np.mean(a**2)) + 1e-12
    b /= np.sqrt(np.mean(b**2)) + 1e-12
    return a + b * 10 ** (rng.uniform(-3.0, 3.0) / 20)


def _melody(rng: np.random.Generator, n: int) -> np.ndarray:
    """A tune: at least three notes of a major scale, each a harmonic tone that strikes and decays."""
    t_note_max = max(n // 3, 1)
    base = _log_uniform(rng, 110.0, 440.0)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    harmonics = np.arange(1, 9)
    timbre = harmonics ** -rng.uniform(0.7, 2.0)  # brighter or duller instruments
    out, pos, degree = np.zeros(n), 0, int(rng.integers(0, 7))
    while pos < n:
        length = min(n - pos, int(SAMPLING_RATE * rng.uniform(0.08, 0.35)), t_note_max)
        degree = int(np.clip(degree + rng.choice([-3, -2, -1, 1, 2, 3]), 0, 13))  # never the same note twice
        f0 = base * 2 ** ((12 * (degree // 7) + scale[degree % 7]) / 12)
        t = np.arange(length) / SAMPLING_RATE
        audible = harmonics * f0 < SAMPLING_RATE / 2 - 100
        note = (timbre[audible, None] * np.sin(2 * np.pi * f0 * harmonics[audible, None] * t)).sum(axis=0)
        decay = np.exp(-t / rng.uniform(0.05, 0.5))
        out[pos : pos + length] = note * decay * _envelope(length, int(rng.integers(16, 400)), 80)
        pos += length
    return out


def _warble(rng: np.random.Generator, n: int) -> np.ndarray:
    """A siren or bird-like warble: a tone whose pitch swings +-15-40 % at 2-12 Hz (several mel bins)."""
    t = np.arange(n) / SAMPLING_RATE
    centre, rate, depth = _log_uniform(rng, 300.0, 2500.0), rng.uniform(2.0, 12.0), rng.uniform(0.15, 0.4)
    freq = centre * (1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLING_RATE)


def other_event(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """A clean `n`-sample sound of the `other` class of kind `kind` (one of `OTHER_KINDS`), not yet scaled."""
    makers = {"speech": _speech, "noise_bursts": _noise_bursts, "mixture": _mixture, "melody": _melody, "warble": _warble}
    if kind not in makers:
        raise ValueError(f"unknown kind of 'other' sound {kind!r}; the kinds are {', '.join(OTHER_KINDS)}")
    return makers[kind](rng, n)


# ---- recording conditions ---------------------------------------------------------------------------------------------
def add_noise(clean: np.ndarray, noise: np.ndarray, snr_db: float, reference: slice = slice(None)) -> np.ndarray:
    """`clean` + `noise` scaled so that the signal-to-noise ratio over `reference` is `snr_db`.

    The ratio is of mean powers over the `reference` samples (the event's span, so that a short event in a
    long clip is not judged by its silence): 10 log10(mean(clean[ref]^2) / mean(noise_scaled[ref]^2)).
    Shapes: clean, noise (N,) -> (N,).
    """
    if clean.shape != noise.shape:
        raise ValueError(f"clean {clean.shape} and noise {noise.shape} must have the same shape")
    signal_power, noise_power = np.mean(clean[reference] ** 2), np.mean(noise[reference] ** 2)
    if noise_power <= 0:
        raise ValueError("the noise is silent over the reference span: nothing to scale to an SNR")
    return clean + noise * np.sqrt(signal_power / noise_power * 10 ** (-snr_db / 10))


def background_noise(rng: np.random.Generator, n: int, colour: str = "white") -> np.ndarray:
    """Stationary background noise (n,): "white" (flat), "pink" (1/f power) or "brown" (1/f^2, a rumble)."""
    if colour == "white":
        return rng.standard_normal(n)
    if colour == "pink":
        return _pink(rng, n)
    if colour == "brown":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.arange(spectrum.size, dtype=np.float64), 1.0)
        return np.fft.irfft(spectrum / f, n)
    raise ValueError(f"unknown noise colour {colour!r}; use white, pink or brown")


def reverb_impulse_response(rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """A room's impulse response (L,): a unit direct path, then a noise tail decaying exponentially.

    The tail's amplitude falls as exp(-3 ln(10) t / rt60), i.e. its energy by 60 dB in `rt60` seconds
    (Sabine's reverberation time); it is scaled so that the direct-to-reverberant energy ratio is
    `drr_db`. L = rt60 seconds of samples, where the tail is 60 dB down.
    """
    if not rt60 > 0:
        raise ValueError(f"rt60={rt60}: the reverberation time must be positive (seconds)")
    length = max(int(rt60 * SAMPLING_RATE), 2)
    t = np.arange(1, length) / SAMPLING_RATE
    tail = rng.standard_normal(length - 1) * np.exp(-3 * np.log(10) * t / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))  # direct energy 1 / tail energy = DRR
    return np.concatenate([[1.0], tail])


def add_reverb(x: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """`x` (N,) heard in a room: convolved with `impulse_response`, cut back to N samples (the tail past the clip is lost)."""
    from scipy.signal import fftconvolve

    return fftconvolve(x, impulse_response)[: x.size]


def clip_waveform(x: np.ndarray, threshold: float) -> np.ndarray:
    """Hard clipping at +-`threshold`, what an overdriven recorder or converter does."""
    if not threshold > 0:
        raise ValueError(f"threshold={threshold}: the clipping level must be positive")
    return np.clip(x, -threshold, threshold)


def level_changes(rng: np.random.Generator, n: int, max_db: float = 6.0) -> np.ndarray:
    """A gain curve (n,) that wanders smoothly within +-`max_db` dB: a source moving, a hand on a fader.

    Piecewise linear in dB between 2-5 random knots, so it changes over hundreds of milliseconds, far
    slower than the am_tone class's 4-8 Hz modulation."""
    knots = rng.uniform(-max_db, max_db, size=int(rng.integers(2, 6)))
    return 10 ** (np.interp(np.arange(n), np.linspace(0, n - 1, knots.size), knots) / 20)


def codec_round_trip(x: np.ndarray, quality: float = 0.5) -> np.ndarray:
    """`x` (N,) encoded with Ogg/Vorbis at `quality` (0 best .. 1 smallest, libsndfile's compression
    level) and decoded again: the quantisation noise a lossy codec adds where its psychoacoustic model
    expects it to be masked. Deterministic (the encoder draws no random numbers). Returns float64 (N,)."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, x.astype(np.float32), SAMPLING_RATE, format="OGG", subtype="VORBIS", compression_level=quality)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float64")
    out = np.zeros(x.size)
    out[: min(x.size, decoded.size)] = decoded[: x.size]
    return out


def _fade(event: np.ndarray) -> np.ndarray:
    # 10 ms raised-cosine fades so the event's edges do not splash broadband clicks over the spectrum.
    fade = min(160, event.size // 4)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    event[:fade] *= ramp
    event[event.size - fade :] *= ramp[::-1]
    return event * (1.0 / np.sqrt(np.mean(event**2) + 1e-12))  # unit RMS over the event


# The shortest event, as a fraction of the clip: the original set's, and the realistic conditions' (short
# events with background around them). `clip_kind` replays a clip's first draws with the same fraction.
CLEAN_SHORTEST_EVENT = 0.6
REALISTIC_SHORTEST_EVENT = 0.4


def _span_and_kind(rng: np.random.Generator, name: str, num_samples: int, shortest: float) -> tuple[int, int, str]:
    """An event's length (`shortest`..100 % of the clip), onset, and kind (`name`, or for `other` one of OTHER_KINDS)."""
    length = int(num_samples * rng.uniform(shortest, 1.0))
    onset = int(rng.integers(0, num_samples - length + 1))
    kind = OTHER_KINDS[int(rng.integers(len(OTHER_KINDS)))] if name == OTHER else name
    return length, onset, kind


def _make_event(rng: np.random.Generator, kind: str, length: int) -> np.ndarray:
    return other_event(kind, rng, length) if kind in OTHER_KINDS else _event(kind, rng, length)


def _clean_clip(rng: np.random.Generator, name: str, num_samples: int) -> np.ndarray:
    """The original set's conditions: one event over 60-100 % of the clip, white background at 10-30 dB SNR."""
    length, onset, kind = _span_and_kind(rng, name, num_samples, CLEAN_SHORTEST_EVENT)
    event = _fade(_make_event(rng, kind, length))
    snr_db = rng.uniform(10.0, 30.0)
    clip = rng.standard_normal(num_samples) * 10 ** (-snr_db / 20)
    clip[onset : onset + length] += event
    return clip * 10 ** (rng.uniform(-35.0, -10.0) / 20) / np.sqrt(np.mean(clip**2))


def _realistic_clip(rng: np.random.Generator, name: str, num_samples: int) -> np.ndarray:
    """One event recorded as a phone or a field recorder would: see `make_clip`."""
    length, onset, kind = _span_and_kind(rng, name, num_samples, REALISTIC_SHORTEST_EVENT)
    raw = _make_event(rng, kind, length)
    while not np.any(raw):  # an event too short to sound (babble that is all pause): drawn again from the same stream
        raw = _make_event(rng, kind, length)
    event = _fade(raw) * level_changes(rng, length)
    dry = np.zeros(num_samples)
    dry[onset : onset + length] = event
    if rng.random() < 0.5:
        dry = add_reverb(dry, reverb_impulse_response(rng, rt60=rng.uniform(0.1, 0.5), drr_db=rng.uniform(3.0, 15.0)))
    noise = background_noise(rng, num_samples, ("white", "pink", "brown")[int(rng.integers(3))])
    clip = add_noise(dry, noise, snr_db=rng.uniform(6.0, 30.0), reference=slice(onset, onset + length))
    clip *= 10 ** (rng.uniform(-40.0, -8.0) / 20) / np.sqrt(np.mean(clip**2))
    if rng.random() < 0.15:  # recorded too hot: the peaks 6-20 dB over the ceiling, which is then at 0.9 full scale
        threshold = np.abs(clip).max() * 10 ** (-rng.uniform(6.0, 20.0) / 20)
        clip = clip_waveform(clip, threshold) * (0.9 / threshold)
    if rng.random() < 0.2:
        clip = codec_round_trip(clip, quality=rng.uniform(0.3, 0.9))
    return clip


# Short recordings. A file shorter than the model's window reaches the model padded by the feature
# extractor (padded frames hold a constant that no recorded frame does), and a model that never saw
# padding in training reads the padded frames as a sound of their own. `short=p` makes a fraction p of
# the clips shorter than the window, SHORTEST_SECONDS up to the window.
SHORTEST_SECONDS = 0.3
_LENGTH_STREAM = 1  # the extra seed word of the generator that draws a clip's length, apart from its content


def _check_short(short: float) -> None:
    if not 0.0 <= short <= 1.0:
        raise ValueError(f"short={short}: the fraction of short clips must lie in [0, 1]")


def recorded_length(seed: int, index: int, num_samples: int, short: float) -> int:
    """How many samples clip `index` of `seed` lasts: `num_samples`, or for a fraction `short` of the
    clips a length drawn uniformly from `SHORTEST_SECONDS` up to it.

    Drawn from its own generator, `default_rng([seed, index, 1])`, so a clip's content draws (and
    `clip_kind`) do not depend on whether the clip is short, and `short=0` leaves every clip as it was."""
    _check_short(short)
    shortest = max(int(SHORTEST_SECONDS * SAMPLING_RATE), FRAME_LENGTH)
    if short == 0.0 or num_samples <= shortest:
        return num_samples
    rng = np.random.default_rng([seed, index, _LENGTH_STREAM])
    if rng.random() >= short:
        return num_samples
    return int(rng.integers(shortest, num_samples))


def make_clip(
    seed: int, index: int, num_samples: int = samples_for_frames(128), *, other: bool = False, realistic: bool = False,
    short: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Clip `index` of the dataset drawn with `seed`: a float32 waveform (N,) and its class id.

    Classes cycle with the index (`index % 10`, or `% 11` with `other`, whose id is 10), so any run
    of that many consecutive indices holds one clip of each class; everything else about the clip is
    drawn from `default_rng([seed, index])`.

    `other=True` adds the class `other`: sounds that are none of the ten (`OTHER_KINDS`: speech-like
    babble, band-passed noise bursts, mixtures of two classes, melodies, warbles).
    `realistic=True` records every clip in harsher conditions: events as short as 40 % of the clip,
    slow level changes of up to +-6 dB, white, pink or brown background noise at 6-30 dB SNR, a room's
    reverberation (half the clips; RT60 0.1-0.5 s), clipping (15 %) and an Ogg/Vorbis round trip (20 %).
    `short=p` makes a fraction p of the clips shorter than `num_samples` (`recorded_length`), the event
    inside them, as a short file is before the feature extractor pads it.
    Without any of them, clip `i` of seed `s` is the same as in earlier versions of this set.
    """
    if num_samples < FRAME_LENGTH:
        raise ValueError(f"num_samples={num_samples} is shorter than one {FRAME_LENGTH}-sample frame; use at least {FRAME_LENGTH}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed ({seed}) and index ({index}) must be non-negative")
    labels = LABELS_WITH_OTHER if other else CLASSES
    label = index % len(labels)
    rng = np.random.default_rng([seed, index])
    length = recorded_length(seed, index, num_samples, short)
    clip = (_realistic_clip if realistic else _clean_clip)(rng, labels[label], length)
    # Sparse events (a slow click train) reach a high peak at a modest RMS: keep every clip within
    # [-0.9, 0.9] so that it survives being written as 16-bit PCM.
    clip *= min(1.0, 0.9 / np.abs(clip).max())
    return clip.astype(np.float32), label


def clip_kind(seed: int, index: int, num_samples: int = samples_for_frames(128), *, other: bool = False,
              realistic: bool = False, short: float = 0.0) -> str:
    """What `make_clip` with the same arguments holds: its class name, or for `other` the kind of sound
    (one of `OTHER_KINDS`), found from the clip's first draws without making it."""
    labels = LABELS_WITH_OTHER if other else CLASSES
    rng = np.random.default_rng([seed, index])
    length = recorded_length(seed, index, num_samples, short)
    return _span_and_kind(rng, labels[index % len(labels)], length,
                          REALISTIC_SHORTEST_EVENT if realistic else CLEAN_SHORTEST_EVENT)[2]


class SyntheticDataset(torch.utils.data.Dataset):
    """`size` clips of the synthetic set drawn with `seed`, made on demand.

    Items are dicts like every ast-min dataset's: `waveform` float32 numpy (N,), `target` float32
    one-hot (C,) over `self.labels` (the ten `CLASSES`, then `other` when `other=True`), `index`.
    The clips last `samples_for_frames(num_frames)` samples so that they fill exactly `num_frames`
    spectrogram frames, except the short ones that `short` asks for, which the feature extractor pads to
    that many frames. `other`, `realistic` and `short` are `make_clip`'s. Made clips are kept (up to
    `cache_bytes` of them), since a training run asks for each clip once per epoch and the
    realistic conditions cost more to make than a training step on them. The cache lives in the
    process that reads the clips: DataLoader worker processes start afresh each epoch, each with its
    own, so it saves work only when the clips are read in the training process (`num_workers=0`).
    """

    labels = CLASSES
    sampling_rate = SAMPLING_RATE
    multi_label = False

    def __init__(self, size: int, seed: int = 0, num_frames: int = 128, *, other: bool = False, realistic: bool = False,
                 short: float = 0.0, cache_bytes: int = 2**30):
        if size < 1:
            raise ValueError(f"size={size}: a synthetic dataset needs at least one clip")
        self.size, self.seed, self.num_samples = int(size), int(seed), samples_for_frames(num_frames)
        self.other, self.realistic = bool(other), bool(realistic)
        _check_short(short)  # now, not at the first clip
        self.short = float(short)
        self.labels = LABELS_WITH_OTHER if self.other else CLASSES
        self._cache: dict[int, tuple[np.ndarray, int]] | None = {} if self.size * self.num_samples * 4 <= cache_bytes else None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} clips")
        made = self._cache.get(index) if self._cache is not None else None
        if made is None:
            made = make_clip(self.seed, index, self.num_samples, other=self.other, realistic=self.realistic, short=self.short)
            if self._cache is not None:
                self._cache[index] = made
        waveform, label = made
        target = np.zeros(len(self.labels), dtype=np.float32)
        target[label] = 1.0
        return {"waveform": waveform.copy(), "target": target, "index": index}


def write_examples(
    directory: str | os.PathLike, seed: int = 12345, per_class: int = 1, num_frames: int = 128, classes=CLASSES
) -> list[str]:
    """Write `per_class` 16-bit 16 kHz wav files of each of `classes` to `directory` as `<class>_<k>.wav`
    (`<class>.wav` when `per_class` is 1).

    These are the README's example files (`ast-min classify examples/rising_chirp.wav`). Returns
    their paths. For a training folder (one sub-folder per class) use `write_class_folders`.
    """
    import soundfile as sf

    os.makedirs(directory, exist_ok=True)
    paths = []
    for k in range(per_class):
        for name in classes:
            label = CLASSES.index(name)
            waveform, _ = make_clip(seed, k * len(CLASSES) + label, samples_for_frames(num_frames))
            path = os.path.join(directory, f"{name}.wav" if per_class == 1 else f"{name}_{k}.wav")
            sf.write(path, waveform, SAMPLING_RATE, subtype="PCM_16")
            paths.append(path)
    return paths


def write_class_folders(directory: str | os.PathLike, size: int, seed: int = 0, num_frames: int = 128) -> list[str]:
    """Write `size` clips as `directory/<class>/<index>.wav`, the layout `ClipDataset.from_folder` reads."""
    import soundfile as sf

    paths = []
    for index in range(size):
        waveform, label = make_clip(seed, index, samples_for_frames(num_frames))
        folder = os.path.join(directory, CLASSES[label])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{index:06d}.wav")
        sf.write(path, waveform, SAMPLING_RATE, subtype="FLOAT")
        paths.append(path)
    return paths
