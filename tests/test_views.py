"""Per-encoder views, each checked against an independent reference (analytic signals, np.mean/np.std)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.signal import sosfilt

from stence_bench import TWELVE_LEADS, EncoderSpec
from stence_bench.data.views import (
    Standardizer,
    bandpass,
    bandpass_design,
    contract_dict,
    contract_key,
    fit_window,
    resample,
    select_leads,
)
from stence_bench.data.windows import apply_contract

RNG_SEED = 1234


def spec(**kw) -> EncoderSpec:
    fields = dict(name="net", factory="stence_bench_plugins.encoders.resnet1d:resnet1d_wang", sampling_rate=100,
                  window_s=2.5, embed_dim=256)
    fields.update(kw)
    return EncoderSpec(**fields)


def tone(freq: float, fs: float, seconds: float, amplitude: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(fs * seconds)) / fs
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def interior(x: np.ndarray, frac: float = 0.25) -> np.ndarray:
    """The middle of the last axis, away from edge effects."""
    n = x.shape[-1]
    return x[..., int(n * frac):int(n * (1 - frac))]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64)))))


def gain_db(x_in: np.ndarray, x_out: np.ndarray) -> float:
    return 20 * math.log10(rms(interior(x_out)) / rms(interior(x_in)))


def ecg_like(t: np.ndarray) -> np.ndarray:
    """A smooth synthetic ECG (P, QRS, T Gaussians at 72 bpm plus baseline wander), band-limited well below 250 Hz."""
    rr = 60 / 72
    phase = np.mod(t, rr)
    out = 0.3 * np.sin(2 * np.pi * 0.2 * t) + 0.2
    for centre, width, height in ((0.15, 0.025, 0.15), (0.30, 0.010, 1.2), (0.55, 0.040, 0.3)):
        out += height * np.exp(-0.5 * ((phase - centre) / width) ** 2)
    return out


# ----------------------------------------------------------------------------------------------- resample


def test_resample_keeps_frequency_and_amplitude():
    x = tone(5, 500, 10, amplitude=1.3)
    y = resample(x, 500, 100)
    assert y.dtype == np.float32 and y.shape == (1000,)
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(y), d=1 / 100)
    peak = int(np.argmax(spectrum))
    assert freqs[peak] == pytest.approx(5.0)
    assert 2 * spectrum[peak] / len(y) == pytest.approx(1.3, rel=0.02)
    # and sample by sample against the tone sampled directly at 100 Hz
    np.testing.assert_allclose(interior(y), interior(tone(5, 100, 10, amplitude=1.3)), atol=0.01 * 1.3)


def test_resample_is_anti_aliased():
    x = tone(70, 500, 10)  # above the new Nyquist (50 Hz): naive decimation would alias it to 30 Hz at full size
    naive = x[::5]
    assert gain_db(x, naive) > -1  # the reference: without a filter, the tone survives
    assert gain_db(x, resample(x, 500, 100)) < -20


def test_resample_lengths_and_multichannel():
    x = np.stack([tone(3, 500, 10), tone(7, 500, 10)])
    y = resample(x, 500, 250)
    assert y.shape == (2, 2500) and y.dtype == np.float32
    assert resample(x[:, :4999], 500, 250).shape == (2, 2500)  # ceil(4999 / 2)
    assert resample(x[0], 500, 250).shape == (2500,)


def test_resample_1000_to_500_matches_the_signal_sampled_at_500():
    t_in, t_out = np.arange(10_000) / 1000, np.arange(5000) / 500
    y = resample(ecg_like(t_in).astype(np.float32), 1000, 500)
    reference = ecg_like(t_out)
    assert y.shape == reference.shape
    assert np.max(np.abs(y - reference)) < 0.01 * np.ptp(reference)  # edges included: padtype="line"


def test_resample_identity_when_rates_equal():
    x = tone(5, 500, 1)
    assert resample(x, 500, 500.0) is x
    y = resample(x.astype(np.float64), 500, 500)
    assert y.dtype == np.float32 and np.array_equal(y, x)


def test_resample_non_integer_ratio_360_to_500():
    x = tone(5, 360, 10, phase=0.3)
    y = resample(x, 360, 500)
    assert y.shape == (5000,)  # 3600 * 25 / 18
    np.testing.assert_allclose(interior(y), interior(tone(5, 500, 10, phase=0.3)), atol=0.01)


def test_resample_constant_baseline_has_no_edge_ringing():
    x = np.full((2, 3000), 1000.0, dtype=np.float32)  # a 1 V offset: zero padding would pull the edges down
    np.testing.assert_allclose(resample(x, 360, 500), 1000.0, rtol=1e-5)


@pytest.mark.parametrize("fs_in, fs_out", [(500, 0), (-1, 100), (500, 100.01), (1, 5000), (500, math.inf)])
def test_resample_rejects_rates_it_cannot_represent(fs_in, fs_out):
    with pytest.raises(ValueError, match="resample"):
        resample(np.zeros(100, dtype=np.float32), fs_in, fs_out)


# ----------------------------------------------------------------------------------------------- bandpass


def test_bandpass_attenuates_drift_and_noise_and_passes_the_band():
    fs, seconds = 500, 60
    drift, mains, band = tone(0.05, fs, seconds), tone(100, fs, seconds), tone(10, fs, seconds)
    assert gain_db(drift, bandpass(drift, fs, 0.5, 40)) < -20
    assert gain_db(mains, bandpass(mains, fs, 0.5, 40)) < -20
    assert abs(gain_db(band, bandpass(band, fs, 0.5, 40))) < 1
    mixed = bandpass(np.stack([drift + band, mains + band]), fs, 0.5, 40)
    assert mixed.dtype == np.float32 and mixed.shape == (2, fs * seconds)
    np.testing.assert_allclose(interior(mixed), np.stack([interior(band)] * 2), atol=0.05)


def test_bandpass_is_zero_phase():
    fs, n = 500, 5001
    t = (np.arange(n) - n // 2) / fs
    pulse = np.exp(-0.5 * (t / 0.02) ** 2).astype(np.float32)  # symmetric about sample 2500
    out = bandpass(pulse, fs, 0.5, 40)
    assert int(np.argmax(out)) == n // 2
    # symmetric too, up to the edge handling, which is not itself time-symmetric (forward pass first)
    np.testing.assert_allclose(interior(out), interior(out[::-1]), atol=1e-4)
    np.testing.assert_allclose(out, out[::-1], atol=1e-3)
    # the reference: the same filter run forward only delays the peak
    causal = sosfilt(bandpass_design(500.0, 0.5, 40.0, 4).copy(), pulse)
    assert int(np.argmax(causal)) >= n // 2 + 3


def test_bandpass_low_pass_only_and_high_pass_only():
    fs = 500
    dc = np.full(5000, 2.0, dtype=np.float32)
    mains, band, drift = tone(100, fs, 10), tone(10, fs, 10), tone(0.05, fs, 60)
    assert bandpass_design(500.0, 0.0, 40.0, 4).shape == (2, 6)  # low-pass: order 4 -> 2 sections
    np.testing.assert_allclose(bandpass(dc, fs, 0, 40), 2.0, rtol=1e-4)  # DC passes a low-pass
    assert gain_db(mains, bandpass(mains, fs, 0, 40)) < -20
    assert bandpass_design(500.0, 0.5, 250.0, 4).shape == (2, 6)  # high >= fs / 2: high-pass only
    assert abs(gain_db(mains, bandpass(mains, fs, 0.5, 250))) < 1
    assert abs(gain_db(band, bandpass(band, fs, 0.5, 400))) < 1
    assert gain_db(drift, bandpass(drift, fs, 0.5, 250)) < -20
    assert bandpass(dc, fs, 0, 250) is dc  # neither edge: nothing to filter


def test_bandpass_design_is_cached_and_read_only():
    first = bandpass_design(500.0, 0.5, 40.0, 4)
    assert bandpass_design(500.0, 0.5, 40.0, 4) is first
    assert bandpass_design(500.0, 0.5, 40.0, 4).shape == (4, 6)
    with pytest.raises(ValueError):
        first[0, 0] = 1.0


def test_bandpass_short_signal_is_a_clear_error():
    with pytest.raises(ValueError, match=r"10 samples is too short.*more than 27 samples"):
        bandpass(np.zeros((2, 10), dtype=np.float32), 500, 0.5, 40)
    assert bandpass(np.zeros((2, 28), dtype=np.float32), 500, 0.5, 40).shape == (2, 28)


@pytest.mark.parametrize("low, high", [(40, 0.5), (-1, 40), (300, 400)])
def test_bandpass_rejects_bad_bands(low, high):
    with pytest.raises(ValueError, match="bandpass"):
        bandpass(np.zeros(1000, dtype=np.float32), 500, low, high)


# ---------------------------------------------------------------------------------- window, leads, z-score


def test_fit_window_crops_centred_or_at_offset_and_pads():
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    np.testing.assert_array_equal(fit_window(x, 4), x[:, 3:7])
    np.testing.assert_array_equal(fit_window(x, 5), x[:, 2:7])
    np.testing.assert_array_equal(fit_window(x, 4, offset=0), x[:, 0:4])
    np.testing.assert_array_equal(fit_window(x, 4, offset=6), x[:, 6:10])
    np.testing.assert_array_equal(fit_window(x, 10), x)
    padded = fit_window(x, 13)
    assert padded.shape == (2, 13) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[:, :10], x)
    assert not padded[:, 10:].any()
    assert fit_window(x, 13, offset=0).shape == (2, 13)
    for bad in (-1, 7):
        with pytest.raises(ValueError, match=r"offset .* outside \[0, 6\]"):
            fit_window(x, 4, offset=bad)


def test_select_leads_orders_by_name_and_names_missing_leads():
    x = np.arange(12, dtype=np.float32)[:, None] * np.ones((1, 5), dtype=np.float32)
    out = select_leads(x, TWELVE_LEADS, ("V1", "I", "aVF"))
    np.testing.assert_array_equal(out[:, 0], [6, 0, 5])
    assert select_leads(x, TWELVE_LEADS, TWELVE_LEADS) is x
    with pytest.raises(ValueError, match=r"lacks lead\(s\) V1, V2; it has I, II, III"):
        select_leads(x[:3], ("I", "II", "III"), ("I", "V1", "V2"))
    with pytest.raises(ValueError, match="3 lead names"):
        select_leads(x, ("I", "II", "III"), ("I",))


def test_zscore_record_per_lead():
    from stence_bench.data.windows import Normalizer

    rng = np.random.default_rng(RNG_SEED)
    x = (rng.normal(size=(3, 1000)) * [[1.0], [5.0], [0.1]] + [[0.0], [100.0], [-3.0]]).astype(np.float32)
    s = spec(leads=("I", "II", "III"), window_s=10.0, sampling_rate=100.0)
    z = Normalizer(s, None, [1000])(torch.from_numpy(x)[None])[0].numpy()
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-4)
    flat = Normalizer(s, None, [10])(torch.full((1, 3, 10), 7.0))
    assert torch.equal(flat, torch.zeros(1, 3, 10))  # a flat lead


def test_zscore_all_leads_uses_one_mean_and_deviation_for_the_window():
    """ECGFounder's and ST-MEM's standardisation: ``(x - x.mean()) / x.std()`` over every lead and sample, so the
    leads keep their relative amplitudes. By hand on two leads: values 0, 2 and 4, 6 have mean 3 and std sqrt(5)."""
    from stence_bench.data.windows import Normalizer, Windows

    x = np.array([[0.0, 2.0], [4.0, 6.0]], dtype=np.float32)
    by_hand = (x - 3.0) / (np.sqrt(5.0) + 1e-6)
    s = spec(sampling_rate=1, window_s=2, leads=("I", "II"), normalization="zscore_all_leads")
    np.testing.assert_allclose(Normalizer(s, None, [2])(torch.from_numpy(x)[None])[0].numpy(), by_hand, rtol=1e-6)
    np.testing.assert_allclose(apply_contract(x, 1, ("I", "II"), s), by_hand, rtol=1e-6)
    # the harness's windows do the same, and a record shorter than the window uses its own samples only
    windows = Windows.of_arrays(s, ["full", "short"], [x, x[:, :1]])
    got, counts = windows.sliding(np.array([0, 1]))
    assert counts.tolist() == [1, 1]
    np.testing.assert_allclose(got[0].numpy(), by_hand, rtol=1e-5)
    short = (x[:, :1] - 2.0) / (2.0 + 1e-6)  # values 0 and 4: mean 2, std 2; then a zero pad
    assert torch.allclose(got[1, :, :1], torch.from_numpy(short)) and got[1, :, 1:].abs().sum() == 0


# ------------------------------------------------------------------------------------------ Standardizer


def records(offset: float = 0.0, scale: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    lead_scale = np.array([[1.0], [2.0], [0.5]])
    return [(offset + scale * lead_scale * rng.normal(loc=i, size=(3, n))).astype(np.float32)
            for i, n in enumerate((1000, 37, 5000, 1, 250))]


def transform(scaler: Standardizer, record: np.ndarray) -> np.ndarray:
    """The harness's dataset normalisation of one whole record with ``scaler``."""
    from stence_bench.data.windows import Normalizer

    contract = spec(leads=("I", "II", "III"), normalization="zscore_dataset")
    return Normalizer(contract, scaler, [record.shape[1]])(torch.from_numpy(record)[None])[0].numpy()


@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1e4, 0.05)])
def test_standardizer_matches_numpy_over_the_concatenation(offset, scale):
    recs = records(offset, scale)
    scaler = Standardizer()
    for rec in recs:
        scaler.partial_fit(rec)
    allx = np.concatenate(recs, axis=1).astype(np.float64)
    assert scaler.count == allx.shape[1]
    np.testing.assert_allclose(scaler.mean, allx.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(scaler.std, allx.std(axis=1), rtol=1e-6)
    out = transform(scaler, recs[2])
    np.testing.assert_allclose(out, (recs[2] - allx.mean(axis=1)[:, None]) / allx.std(axis=1)[:, None],
                               rtol=1e-4, atol=1e-4)


def test_standardizer_round_trips_through_json():
    scaler = Standardizer(leads=("I", "II", "V1"))
    for rec in records():
        scaler.partial_fit(rec)
    again = Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again.leads == ("I", "II", "V1") and again.count == scaler.count
    assert np.array_equal(again.mean, scaler.mean) and np.array_equal(again.std, scaler.std)
    assert np.array_equal(transform(again, records()[0]), transform(scaler, records()[0]))
    with pytest.raises(ValueError, match="bad state"):
        Standardizer.from_dict({"mean": [0.0]})


def test_standardizer_errors():
    with pytest.raises(ValueError, match="fitted on the training records"):
        transform(Standardizer(), np.zeros((3, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="not fitted"):
        Standardizer().to_dict()
    scaler = Standardizer().partial_fit(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="2 leads, the scaler 3"):
        scaler.partial_fit(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="non-finite"):
        scaler.partial_fit(np.full((3, 10), np.nan))


# ---------------------------------------------------------------------------------------------- contract


def test_contract_key_is_shared_by_equal_contracts_only():
    base = spec()
    key = contract_key(base)
    assert len(key) == 16 and key == contract_key(spec())
    assert contract_key(spec(name="other", description="x", embed_dim=3, version="7",
                             factory="elsewhere:build")) == key
    assert contract_key(spec(sampling_rate=100.0)) == key
    changed = [spec(sampling_rate=200), spec(window_s=5.0), spec(leads=("I", "II")), spec(leads=TWELVE_LEADS[::-1]),
               spec(bandpass_hz=(0.5, 40)), spec(bandpass_hz=(0.5, 45)), spec(normalization="none"),
               spec(normalization="zscore_dataset")]
    keys = {contract_key(s) for s in changed}
    assert len(keys) == len(changed) and key not in keys
    assert contract_dict(spec(bandpass_hz=(0.5, 40))) == {
        "sampling_rate": 100.0, "window_s": 2.5, "leads": list(TWELVE_LEADS), "bandpass_hz": [0.5, 40.0],
        "normalization": "zscore_record"}
    json.dumps(contract_dict(base))


def twelve_lead_record(fs: float = 500, seconds: float = 10) -> np.ndarray:
    """Lead k is a constant k mV plus a small 1 Hz wobble: rows are recognisable after any view."""
    t = np.arange(round(fs * seconds)) / fs
    wobble = 0.01 * np.sin(2 * np.pi * 1.0 * t)
    return (np.arange(12)[:, None] + wobble[None, :]).astype(np.float32)


def test_apply_contract_end_to_end():
    rec = twelve_lead_record()
    for s in (spec(), spec(bandpass_hz=(0.5, 40))):
        out = apply_contract(rec, 500, TWELVE_LEADS, s)
        assert out.shape == (12, 250) and out.dtype == np.float32 and np.isfinite(out).all()
        assert out.flags.c_contiguous
        np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-4)
        np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-3)


def test_apply_contract_picks_leads_by_name():
    rec = twelve_lead_record()
    s = spec(leads=("I", "II", "V1"), normalization="none")
    out = apply_contract(rec, 500, TWELVE_LEADS, s)
    assert out.shape == (3, 250)
    np.testing.assert_allclose(out.mean(axis=1), [0, 1, 6], atol=0.02)
    shuffled = rec[::-1]
    np.testing.assert_allclose(apply_contract(shuffled, 500, TWELVE_LEADS[::-1], s), out, atol=1e-6)
    with pytest.raises(ValueError, match="lacks lead"):
        apply_contract(rec[:6], 500, TWELVE_LEADS[:6], s)


def test_apply_contract_window_offset_and_padding():
    t = np.arange(5000) / 500
    ramp = np.stack([t, -t]).astype(np.float32)  # value = time in seconds
    s = spec(leads=("I", "II"), normalization="none")
    centred = apply_contract(ramp, 500, ("I", "II"), s)
    np.testing.assert_allclose(centred[0, [0, -1]], [3.75, 6.24], atol=1e-3)
    start = apply_contract(ramp, 500, ("I", "II"), s, offset=0)
    np.testing.assert_allclose(start[0, [0, -1]], [0.0, 2.49], atol=1e-3)
    short = apply_contract(ramp[:, :1000], 500, ("I", "II"), spec(leads=("I", "II")))  # 2 s of a 2.5 s window
    assert short.shape == (2, 250) and not short[:, 200:].any()
    np.testing.assert_allclose(short[:, :200].mean(axis=1), 0, atol=1e-5)  # statistics exclude the padding
    with pytest.raises(ValueError, match="offset"):
        apply_contract(ramp[:, :1000], 500, ("I", "II"), s, offset=3)


def test_apply_contract_zscore_dataset():
    rec = twelve_lead_record()
    s = spec(normalization="zscore_dataset")
    with pytest.raises(ValueError, match="zscore_dataset.*Standardizer"):
        apply_contract(rec, 500, TWELVE_LEADS, s)
    with pytest.raises(ValueError, match="zscore_dataset.*Standardizer"):
        apply_contract(rec, 500, TWELVE_LEADS, s, standardizer=Standardizer())
    scaler = Standardizer(leads=TWELVE_LEADS)
    raw = apply_contract(rec, 500, TWELVE_LEADS, s, normalize=False)
    scaler.partial_fit(raw)
    out = apply_contract(rec, 500, TWELVE_LEADS, s, standardizer=scaler)
    np.testing.assert_allclose(out, (raw - scaler.mean[:, None]) / scaler.std[:, None], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="fitted on leads"):
        apply_contract(rec, 500, TWELVE_LEADS, spec(normalization="zscore_dataset", leads=("I",)),
                       standardizer=scaler)
