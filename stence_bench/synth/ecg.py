"""A vectorised cardiac-dipole ECG generator.

The heart is one electrical dipole ``v(t)`` in body axes (x: the patient's left, y: inferior, z: anterior), a sum of
Gaussian components per beat (P, the left-atrial terminal P, septal Q, R, S, a late terminal QRS force, the ST
"injury current", T and U), each with a time offset from the R peak, a width and a 3-D vector (mV). The eight
independent leads (I, II, V1-V6) are projections of ``v`` on their lead vectors; III, aVR, aVL and aVF are derived
from I and II, so Einthoven's law (III = II - I) and the augmented-lead relations (aVR + aVL + aVF = 0) hold exactly
for every sample, noise included, as they do for real electrodes. On top: heart-rate variability with respiratory
sinus arrhythmia, baseline wander, powerline interference, muscle noise and per-lead electrode gain.

Everything is batched: one call generates ``B`` ECGs with NumPy array operations over the batch (work is done per
beat window, not per sample), so thousands of ECGs take seconds on one core (``benchmarks/synth.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..specs import TWELVE_LEADS

#: The components of a beat, in order; :class:`Beats` arrays have one entry per component.
COMPONENTS: tuple[str, ...] = ("P", "P_term", "Q", "R", "S", "R_late", "ST", "T", "U")
C = {name: i for i, name in enumerate(COMPONENTS)}

#: Lead vectors of the independent leads I, II, V1..V6 in body axes (x left, y inferior, z anterior): the limb
#: leads in the frontal plane at 0 and 60 degrees, the chest leads in the horizontal plane from right-anterior (V1)
#: to left-lateral (V6), with the larger gain of electrodes near the heart and a small inferior component.
_PRECORDIAL_ANGLES = np.deg2rad([112, 92, 70, 50, 27, 5])
_PRECORDIAL_GAINS = np.array([1.2, 1.8, 2.0, 1.9, 1.5, 1.1])
LEAD_VECTORS = np.vstack([
    [1.0, 0.0, 0.0],
    [np.cos(np.deg2rad(60)), np.sin(np.deg2rad(60)), 0.0],
    np.stack([_PRECORDIAL_GAINS * np.cos(_PRECORDIAL_ANGLES), 0.15 * _PRECORDIAL_GAINS,
              _PRECORDIAL_GAINS * np.sin(_PRECORDIAL_ANGLES)], axis=1),
]).astype(np.float64)  # [8, 3]
INDEPENDENT_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass
class Beats:
    """Per-ECG beat morphology for a batch of ``B`` ECGs: ``offset_s`` and ``width_s`` ``[B, K]`` (the component's
    centre relative to the R peak and its Gaussian sigma, seconds), ``vector_mv`` ``[B, K, 3]``."""

    offset_s: np.ndarray
    width_s: np.ndarray
    vector_mv: np.ndarray

    def __post_init__(self) -> None:
        b, k = self.offset_s.shape
        if self.width_s.shape != (b, k) or self.vector_mv.shape != (b, k, 3) or k != len(COMPONENTS):
            raise ValueError(f"Beats: need [B, {len(COMPONENTS)}] offsets and widths and [B, {len(COMPONENTS)}, 3] vectors")


@dataclass
class Rhythm:
    """Heart rate (bpm), RR variability (relative SD) and respiratory sinus arrhythmia (relative amplitude, rate)."""

    heart_rate: np.ndarray
    hrv: np.ndarray
    rsa: np.ndarray
    resp_hz: np.ndarray


@dataclass
class Noise:
    """Per ECG: baseline wander, powerline (mV amplitudes) and its frequency, muscle noise SD (mV), and per-lead
    electrode gain spread (relative SD)."""

    wander_mv: np.ndarray
    powerline_mv: np.ndarray
    powerline_hz: np.ndarray
    muscle_mv: np.ndarray
    gain_sd: np.ndarray


def r_peak_times(rhythm: Rhythm, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """R-peak times ``[B, J]`` (seconds, NaN-padded): a first beat at a random phase, then RR intervals with
    variability and respiratory modulation, covering ``[-0.6 s, seconds + 0.6 s]`` so edge beats are complete."""
    b = rhythm.heart_rate.shape[0]
    rr_mean = 60.0 / rhythm.heart_rate
    n_beats = int(np.ceil((seconds + 1.2) / rr_mean.min() * 1.3)) + 2
    noise = rng.standard_normal((b, n_beats))
    times = np.empty((b, n_beats))
    times[:, 0] = -0.6 + rng.random(b) * rr_mean
    resp_phase = rng.random(b) * 2 * np.pi
    for j in range(1, n_beats):
        t = times[:, j - 1]
        modulation = 1 + rhythm.rsa * np.sin(2 * np.pi * rhythm.resp_hz * t + resp_phase)
        rr = rr_mean * modulation * (1 + rhythm.hrv * noise[:, j])
        times[:, j] = t + np.clip(rr, 0.25, 2.5)
    times[times > seconds + 0.6] = np.nan
    return times


def dipole(beats: Beats, r_times: np.ndarray, n_samples: int, fs: float) -> np.ndarray:
    """The heart vector ``[B, 3, n_samples]`` (mV, float32): every beat's components, evaluated in a window
    around its R peak."""
    b, k = beats.offset_s.shape
    pre = max(0.05, float(np.max(-beats.offset_s + 4 * beats.width_s)))
    post = max(0.05, float(np.max(beats.offset_s + 4 * beats.width_s)))
    pre_n, window = int(np.ceil(pre * fs)), int(np.ceil((pre + post) * fs)) + 1
    pad = pre_n + window
    out = np.zeros((b, n_samples + 2 * pad, 3), dtype=np.float32)
    rows = np.arange(b)[:, None]
    offset = beats.offset_s.astype(np.float32)[:, None, :]
    inv_two_var = (1.0 / (2 * beats.width_s**2)).astype(np.float32)[:, None, :]  # [B, 1, K]
    vectors = beats.vector_mv.astype(np.float32)  # [B, K, 3]
    steps = (np.arange(window) / fs).astype(np.float32)
    for j in range(r_times.shape[1]):
        r = r_times[:, j]
        valid = ~np.isnan(r)
        if not valid.any():
            break
        r = np.where(valid, r, -10.0)
        start = np.floor(r * fs).astype(np.int64) - pre_n  # sample index of the window start
        first = (start / fs - r).astype(np.float32)  # time of the window's first sample from this R peak
        dt = first[:, None] + steps[None, :]  # [B, W]
        shape = np.exp(-np.square(dt[:, :, None] - offset) * inv_two_var)  # [B, W, K]
        contribution = np.matmul(shape, vectors) * valid[:, None, None]  # [B, W, 3]
        cols = np.clip(start[:, None] + np.arange(window)[None, :] + pad, 0, n_samples + 2 * pad - 1)
        out[rows, cols] += contribution
    return out[:, pad : pad + n_samples].transpose(0, 2, 1)


def generate(beats: Beats, rhythm: Rhythm, noise: Noise, *, fs: float = 500.0, seconds: float = 10.0,
             rng: np.random.Generator) -> np.ndarray:
    """``B`` 12-lead ECGs, float32 ``[B, 12, n]`` in mV, leads in :data:`stence_bench.TWELVE_LEADS` order."""
    n = int(round(fs * seconds))
    b = beats.offset_s.shape[0]
    r_times = r_peak_times(rhythm, seconds, rng)
    v = dipole(beats, r_times, n, fs)  # [B, 3, n]
    leads8 = np.matmul(LEAD_VECTORS.astype(np.float32), v)  # [B, 8, n]
    t = (np.arange(n) / fs).astype(np.float32)
    # baseline wander: two slow sinusoids per ECG (respiration, movement), mixed into each lead with its own
    # weights, since the leads share the electrodes that move
    freq = rng.uniform(0.05, 0.5, size=(b, 2, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(b, 2, 1)).astype(np.float32)
    slow = np.sin(2 * np.pi * freq * t + phase)  # [B, 2, n]
    mix = (rng.uniform(-1, 1, size=(b, 8, 2)) * noise.wander_mv[:, None, None]).astype(np.float32)
    leads8 += np.matmul(mix, slow)
    # powerline: one frequency and phase per ECG (a common-mode pickup), lead-dependent amplitude
    phase = rng.uniform(0, 2 * np.pi, size=(b, 1)).astype(np.float32)
    hum = np.sin(2 * np.pi * noise.powerline_hz[:, None].astype(np.float32) * t + phase)  # [B, n]
    leads8 += (noise.powerline_mv[:, None, None] * rng.uniform(0.3, 1.0, size=(b, 8, 1))).astype(np.float32) * hum[:, None]
    # muscle noise: white noise through a short moving average (EMG spectrum above ~20 Hz is mostly kept)
    white = rng.standard_normal((b, 8, n + 2), dtype=np.float32)
    white[:, :, 2:] += white[:, :, 1:-1]
    white[:, :, 2:] += white[:, :, :-2]
    leads8 += (noise.muscle_mv[:, None, None] / np.sqrt(3)).astype(np.float32) * white[:, :, 2:]
    # electrode / skin contact: a gain per independent lead
    leads8 *= (1 + noise.gain_sd[:, None, None] * rng.standard_normal((b, 8, 1))).astype(np.float32)
    # III, aVR, aVL, aVF derived in float32 from I and II, so the relations hold in the returned values
    lead_i, lead_ii, chest = leads8[:, 0], leads8[:, 1], leads8[:, 2:]
    out = np.empty((b, 12, n), dtype=np.float32)
    out[:, 0] = lead_i
    out[:, 1] = lead_ii
    out[:, 2] = lead_ii - lead_i  # III (Einthoven)
    out[:, 3] = -(lead_i + lead_ii) / 2  # aVR
    out[:, 4] = lead_i - lead_ii / 2  # aVL
    out[:, 5] = lead_ii - lead_i / 2  # aVF
    out[:, 6:] = chest
    assert tuple(TWELVE_LEADS[:6]) == ("I", "II", "III", "aVR", "aVL", "aVF")
    return out
