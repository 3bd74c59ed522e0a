"""DICOM readers: the real Mortara 12-lead ECG and the NEMA XA frame, JPEG-family decoding, and bad input.

JPEG files are those shipped inside the pydicom wheel (``pydicom/data/test_files``), relabelled XA in a copy.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import need
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import Decoder

from stence_bench.data import dicom
from stence_bench.data.dicom import Angiogram, read_angiography, read_dicom_ecg
from stence_bench.data.records import BadRecord, Record
from stence_bench.specs import TWELVE_LEADS

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
HANDLERS = ("gdcm",)  # import names of the pixel handlers: python-gdcm


def ecg_file(realdata: Path) -> Path:
    return realdata / "dicom" / "waveform_ecg.dcm"


def xa_file(realdata: Path) -> Path:
    return realdata / "dicom" / "XA1_RLE.dcm"


def edited_copy(src: Path, dst: Path, edit: Callable[[Dataset], None]) -> Path:
    """Write ``src`` to ``dst`` after ``edit(dataset)``."""
    ds = pydicom.dcmread(src)
    edit(ds)
    ds.save_as(dst)
    return dst


def test_ecg_rhythm_group_leads_shape_and_header(realdata):
    path = ecg_file(realdata)
    rec = read_dicom_ecg(path)
    assert isinstance(rec, Record)
    # The file's channels really are I, II, III, aVR, aVL, aVF, V1..V6 (SCP-ECG code meanings).
    assert rec.leads == TWELVE_LEADS
    assert rec.signal.shape == (12, 10000) and rec.signal.dtype == np.float32
    assert rec.fs == 1000.0
    assert rec.record_id == "1.3.6.1.4.1.20029.40.20130125105919.5407.1.1"  # SOP Instance UID
    assert rec.patient_id == "642341"
    assert rec.time == "2013-01-25T10:59:19"
    assert rec.source == str(path)
    assert read_dicom_ecg(path, record_id="ecg-1").record_id == "ecg-1"


def test_ecg_values_are_millivolts_by_the_standard_formula(realdata):
    rec = read_dicom_ecg(ecg_file(realdata))
    item = pydicom.dcmread(ecg_file(realdata)).WaveformSequence[0]
    assert (item.WaveformBitsAllocated, item.WaveformSampleInterpretation) == (16, "SS")
    # Independent decoding: interleaved little-endian int16, C1S1 C2S1 ... CnS1 C1S2 ...
    raw = np.frombuffer(item.WaveformData, dtype="<i2").reshape(item.NumberOfWaveformSamples, -1).T
    expected = np.empty(raw.shape)
    for j, ch in enumerate(item.ChannelDefinitionSequence):
        assert ch.ChannelSensitivityUnitsSequence[0].CodeValue == "uV"
        expected[j] = (raw[j] * float(ch.ChannelSensitivity) * float(ch.ChannelSensitivityCorrectionFactor)
                       + float(ch.ChannelBaseline)) / 1000.0
    np.testing.assert_allclose(rec.signal, expected, rtol=0, atol=1e-6)
    # A few samples by hand: raw 80 (lead I) and -85 (aVR) at 1.25 uV per unit.
    assert rec.signal[0, 0] == pytest.approx(0.100) and rec.signal[3, 0] == pytest.approx(-0.10625)
    # Physiology confirms lead order and scale: Einthoven (II = I + III), Goldberger (aVR + aVL + aVF = 0),
    # and a 12-lead ECG spans millivolts, not microvolts.
    s = rec.signal.astype(np.float64)
    assert np.abs(s[0] + s[2] - s[1]).max() < 0.003
    assert np.abs(s[3] + s[4] + s[5]).max() < 0.003
    assert 0.3 < np.ptp(s[1]) < 10


def test_ecg_calibration_applies_correction_baseline_and_units(realdata, tmp_path):
    """Baseline is added after scaling (it is in physical units); mV channels are not divided by 1000."""

    def edit(ds: Dataset) -> None:
        ch0, ch1 = ds.WaveformSequence[0].ChannelDefinitionSequence[:2]
        ch0.ChannelSensitivityCorrectionFactor, ch0.ChannelBaseline = 0.5, 10
        ch1.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"

    path = edited_copy(ecg_file(realdata), tmp_path / "calibrated.dcm", edit)
    item = pydicom.dcmread(path).WaveformSequence[0]
    raw = np.frombuffer(item.WaveformData, dtype="<i2").reshape(-1, 12).T.astype(np.float64)
    sig = read_dicom_ecg(path).signal
    np.testing.assert_allclose(sig[0], (raw[0] * 1.25 * 0.5 + 10) / 1000, atol=1e-6)
    np.testing.assert_allclose(sig[1], raw[1] * 1.25, rtol=1e-6)
    np.testing.assert_allclose(sig[2], raw[2] * 1.25 / 1000, atol=1e-6)


def test_ecg_meta_has_device_annotations_and_measurements(realdata):
    meta = read_dicom_ecg(ecg_file(realdata)).meta
    json.dumps(meta)
    assert meta["manufacturer"] == "Mortara Instrument, Inc." and meta["model"] == "el250"
    assert meta["multiplex_group"] == "RHYTHM" and meta["multiplex_group_index"] == 0
    assert meta["sex"] == "F" and meta["age"] == 42
    assert meta["highpass_hz"] == 0.05 and meta["lowpass_hz"] == 300.0
    assert meta["annotations"] == ["RITMO SINUSALE", "ECG NORMALE"]
    by_name = {m["name"]: (m["value"], m["unit"]) for m in meta["measurements"]}
    assert by_name["PR Interval"] == (161.0, "ms")
    assert by_name["QRS Duration"] == (75.0, "ms")
    assert by_name["QT Interval"] == (368.0, "ms")
    assert by_name["QRS Axis"] == (52.0, "deg")


def test_ecg_median_beat_group_by_name_and_index(realdata):
    path = ecg_file(realdata)
    median = read_dicom_ecg(path, group="median")
    assert median.signal.shape == (12, 1200) and median.fs == 1000.0 and median.leads == TWELVE_LEADS
    assert median.meta["multiplex_group"] == "MEDIAN BEAT" and median.meta["multiplex_group_index"] == 1
    for other in (read_dicom_ecg(path, group=1), read_dicom_ecg(path, group="MEDIAN BEAT")):
        np.testing.assert_array_equal(other.signal, median.signal)
    np.testing.assert_array_equal(read_dicom_ecg(path, group=0).signal, read_dicom_ecg(path).signal)


@pytest.mark.parametrize("group", ["foo", 2, -1, "e"])
def test_ecg_unknown_group_names_the_groups_available(realdata, group):
    with pytest.raises(BadRecord) as err:
        read_dicom_ecg(ecg_file(realdata), group=group)
    assert err.value.what == "unknown multiplex group" and err.value.file == str(ecg_file(realdata))
    assert "'RHYTHM'" in err.value.why and "'MEDIAN BEAT'" in err.value.why


def test_ecg_unlabelled_groups_rhythm_is_the_original_one(realdata, tmp_path):
    def edit(ds: Dataset) -> None:
        for item in ds.WaveformSequence:
            del item.MultiplexGroupLabel

    path = edited_copy(ecg_file(realdata), tmp_path / "unlabelled.dcm", edit)
    assert read_dicom_ecg(path).signal.shape == (12, 10000)  # ORIGINAL; the median beat is DERIVED
    with pytest.raises(BadRecord, match="unknown multiplex group"):
        read_dicom_ecg(path, group="median")


def test_ecg_bare_dataset_without_preamble_still_reads(realdata, tmp_path):
    ds = pydicom.dcmread(ecg_file(realdata))
    ds.preamble, ds.file_meta = None, FileMetaDataset()
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_dicom_ecg(path).signal, read_dicom_ecg(ecg_file(realdata)).signal)


# --------------------------------------------------------------------------------------------- bad ECG input


def test_random_bytes_are_not_dicom(tmp_path):
    path = tmp_path / "noise.dcm"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    for reader in (read_dicom_ecg, read_angiography):
        with pytest.raises(BadRecord) as err:
            reader(path)
        assert (err.value.file, err.value.what) == (str(path), "not DICOM")


def test_missing_file(tmp_path):
    with pytest.raises(BadRecord, match="file not found"):
        read_dicom_ecg(tmp_path / "absent.dcm")


@pytest.mark.parametrize("keep", [300, 5000, 0.5, -1])
def test_truncated_ecg_is_corrupt_dicom(realdata, tmp_path, keep):
    data = ecg_file(realdata).read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[:n])
    with pytest.raises(BadRecord) as err:
        read_dicom_ecg(path)
    assert (err.value.file, err.value.what) == (str(path), "corrupt DICOM")
    assert "truncated" in err.value.why


def test_short_waveform_data_is_corrupt_waveform(realdata, tmp_path):
    def edit(ds: Dataset) -> None:
        item = ds.WaveformSequence[0]
        item.WaveformData = item.WaveformData[: len(item.WaveformData) // 2]

    path = edited_copy(ecg_file(realdata), tmp_path / "short.dcm", edit)
    with pytest.raises(BadRecord) as err:
        read_dicom_ecg(path)
    assert err.value.what == "corrupt waveform" and "group 0" in err.value.why
    assert read_dicom_ecg(path, group="median").signal.shape == (12, 1200)  # the other group is intact


@pytest.mark.parametrize("element, patched, what", [
    (b"\x3a\x00\x1a\x00DS\x04\x001000", b"abcd", "bad sampling rate"),  # Sampling Frequency
    (b"\x00\x54\x06\x10CS\x02\x00SS", b"XX", "corrupt waveform"),  # Waveform Sample Interpretation
])
def test_damaged_header_values_are_bad_records(realdata, tmp_path, element, patched, what):
    data = ecg_file(realdata).read_bytes()
    assert data.count(element) == 2  # one per multiplex group; the rhythm group comes first
    path = tmp_path / "patched.dcm"
    path.write_bytes(data.replace(element, element[: -len(patched)] + patched, 1))
    with pytest.raises(BadRecord) as err:
        read_dicom_ecg(path)
    assert err.value.what == what and "group 0" in err.value.why


@pytest.mark.parametrize("edit, why", [
    (lambda ch: setattr(ch.ChannelSensitivityUnitsSequence[0], "CodeValue", "mm[Hg]"), "mm[Hg]"),
    (lambda ch: delattr(ch, "ChannelSensitivity"), "uncalibrated"),
    (lambda ch: delattr(ch, "ChannelSensitivityUnitsSequence"), "no Channel Sensitivity Units"),
])
def test_unsupported_units(realdata, tmp_path, edit, why):
    path = edited_copy(ecg_file(realdata), tmp_path / "units.dcm",
                       lambda ds: edit(ds.WaveformSequence[0].ChannelDefinitionSequence[3]))
    with pytest.raises(BadRecord) as err:
        read_dicom_ecg(path)
    assert err.value.what == "unsupported units" and why in err.value.why and "channel 4 (aVR)" in err.value.why


def test_image_is_not_an_ecg_and_ecg_is_not_an_angiogram(realdata):
    with pytest.raises(BadRecord) as err:
        read_dicom_ecg(xa_file(realdata))
    assert (err.value.file, err.value.what) == (str(xa_file(realdata)), "not an ECG waveform")
    assert "no Waveform Sequence" in err.value.why
    with pytest.raises(BadRecord) as err:
        read_angiography(ecg_file(realdata))
    assert (err.value.file, err.value.what) == (str(ecg_file(realdata)), "not an angiogram")
    assert "Modality ECG" in err.value.why


# ------------------------------------------------------------------------------------------------ angiograms


def test_xa_rle_frame(realdata):
    angio = read_angiography(xa_file(realdata))
    assert isinstance(angio, Angiogram)
    assert angio.frames.shape == (1, 1024, 1024) and angio.n_frames == 1
    assert angio.frames.dtype == np.uint16 and angio.bits_stored == 10
    assert 0 < angio.frames.max() < 2**10
    assert angio.transfer_syntax == "RLE Lossless"
    assert angio.patient_id == "20XA1" and angio.study_uid == "1.3.6.1.4.1.5962.1.2.20.20031208063649.855"
    assert angio.time == "2003-12-08T06:36:49-05:00"  # Study Date/Time with Timezone Offset From UTC
    assert angio.frame_time_ms is None and angio.primary_angle is None and angio.secondary_angle is None
    assert angio.source == str(xa_file(realdata))


def test_xa_angles_and_frame_time(realdata, tmp_path):
    def edit(ds: Dataset) -> None:
        ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = -30.5, 20
        ds.FrameTimeVector = [0, 66.7, 66.6]  # the first entry is the reference frame's 0

    path = edited_copy(xa_file(realdata), tmp_path / "angled.dcm", edit)
    angio = read_angiography(path)
    assert (angio.primary_angle, angio.secondary_angle) == (-30.5, 20.0)
    assert angio.frame_time_ms == pytest.approx(66.65)
    path = edited_copy(path, tmp_path / "timed.dcm", lambda ds: setattr(ds, "FrameTime", 33.3))
    assert read_angiography(path).frame_time_ms == pytest.approx(33.3)


def test_xa_without_pixel_data(realdata, tmp_path):
    path = edited_copy(xa_file(realdata), tmp_path / "nopixels.dcm", lambda ds: delattr(ds, "PixelData"))
    with pytest.raises(BadRecord) as err:
        read_angiography(path)
    assert err.value.what == "no pixel data"


def pydicom_as_xa(name: str, tmp_path: Path) -> Path:
    """A copy of a test file shipped in the pydicom wheel, relabelled Modality XA (pixel data untouched)."""
    src = PYDICOM_FILES / name
    need(src.is_file(), f"{src} is not in the installed pydicom wheel")
    return edited_copy(src, tmp_path / name, lambda ds: setattr(ds, "Modality", "XA"))


def need_handlers() -> None:
    missing = [name for name in HANDLERS if importlib.util.find_spec(name) is None]
    need(not missing, f"pixel handlers not installed ({', '.join(missing)}): pip install \"stence-bench[dicom]\"")


@pytest.mark.parametrize("compressed, reference, shape", [
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", (1, 100, 100, 3)),  # JPEG Lossless SV1, colour
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", (1, 64, 64)),  # JPEG 2000 lossless, signed 16 bit
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", (1, 64, 64)),  # JPEG-LS lossless
])
def test_lossless_jpeg_family_decodes_exactly(tmp_path, compressed, reference, shape):
    need_handlers()
    angio = read_angiography(pydicom_as_xa(compressed, tmp_path))
    expected = read_angiography(pydicom_as_xa(reference, tmp_path))
    assert angio.transfer_syntax != expected.transfer_syntax
    assert angio.frames.shape == shape
    np.testing.assert_array_equal(angio.frames, expected.frames)


def test_jpeg_baseline_colour_is_converted_to_rgb(tmp_path):
    need_handlers()
    angio = read_angiography(pydicom_as_xa("SC_rgb_jpeg_dcmtk.dcm", tmp_path))  # YBR_FULL, lossy
    reference = read_angiography(pydicom_as_xa("SC_rgb_rle.dcm", tmp_path)).frames.astype(int)
    assert angio.transfer_syntax == "JPEG Baseline (Process 1)"
    assert angio.frames.shape == (1, 100, 100, 3) and angio.frames.dtype == np.uint8
    diff = np.abs(angio.frames.astype(int) - reference)
    assert diff.mean() < 2 and diff.max() <= 16  # lossy, but RGB: left in YCbCr it would be off by ~100


def test_jpeg_baseline_multiframe(tmp_path):
    need_handlers()
    angio = read_angiography(pydicom_as_xa("examples_ybr_color.dcm", tmp_path))
    assert angio.frames.shape == (30, 240, 320, 3) and angio.n_frames == 30
    assert angio.frame_time_ms == pytest.approx(33.333)
    assert angio.frames.std() > 10 and not np.array_equal(angio.frames[0], angio.frames[-1])


def test_jpeg_extended_12_bit(tmp_path):
    """pydicom's gdcm plugin refuses 12 bits; dicom.py's own gdcm plugin decodes them."""
    need_handlers()
    angio = read_angiography(pydicom_as_xa("JPGExtended.dcm", tmp_path))
    assert angio.transfer_syntax == "JPEG Extended (Process 2 and 4)"
    assert angio.frames.shape == (1, 1024, 256) and angio.bits_stored == 12 and angio.frames.dtype == np.uint16
    assert 0 < angio.frames.max() < 2**12
    # pydicom's reference values for this file (tests/pixels/pixels_reference.py, JPGE_16_12_1_0_1F_M2)
    assert angio.frames[0, 420, 140] == 244 and angio.frames[0, 230, 120] == 95
    # JPEG-lossy.dcm is the same image with an invalid scan end (Se=0) that GDCM, like DCMTK, reads past
    lenient = read_angiography(pydicom_as_xa("JPEG-lossy.dcm", tmp_path))
    np.testing.assert_array_equal(lenient.frames, angio.frames)


def test_jpeg_extended_12_bit_multiframe_and_10_bits_stored(tmp_path):
    """Every frame is decoded; a 12-bit JPEG holding 10-bit XA pixels (Bits Stored 10) keeps its values."""
    need_handlers()
    single = read_angiography(pydicom_as_xa("JPGExtended.dcm", tmp_path)).frames[0]

    def three_frames(ds: Dataset) -> None:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData, ds.NumberOfFrames = encapsulate([frame] * 3), 3
        ds.BitsStored, ds.HighBit = 10, 9  # the values (at most 264) fit

    path = edited_copy(tmp_path / "JPGExtended.dcm", tmp_path / "three.dcm", three_frames)
    angio = read_angiography(path)
    assert angio.frames.shape == (3, 1024, 256) and angio.bits_stored == 10
    for frame in angio.frames:
        np.testing.assert_array_equal(frame, single)


@pytest.mark.parametrize("name, damage, says", [
    ("JPGExtended.dcm", lambda frame: b"\0\0" + frame[2:], "Not a JPEG file"),  # no Start Of Image marker
    ("JPGExtended.dcm", lambda frame: frame[: len(frame) // 2], "GDCM could not decode"),  # truncated
    ("SC_rgb_jpeg_gdcm.dcm", lambda frame: b"\0\0" + frame[2:], "JPEG Lossless"),  # pydicom's own gdcm plugin
])
def test_undecodable_pixel_data_is_a_bad_record(tmp_path, name, damage, says):
    need_handlers()

    def edit(ds: Dataset) -> None:
        ds.PixelData = encapsulate([damage(next(generate_frames(ds.PixelData, number_of_frames=1)))])

    path = edited_copy(pydicom_as_xa(name, tmp_path), tmp_path / "damaged.dcm", edit)
    with pytest.raises(BadRecord) as err:
        read_angiography(path)
    assert (err.value.file, err.value.what) == (str(path), "corrupt pixel data")
    assert says in err.value.why and "failed to decode" in err.value.why and "\n" not in err.value.why


@pytest.mark.parametrize("name, syntax, install", [
    ("SC_rgb_jpeg_gdcm.dcm", None, 'needs python-gdcm: pip install "stence-bench[dicom]"'),
    ("MR_small_jp2klossless.dcm", uid.HTJ2KLossless,  # no gdcm HTJ2K
     'needs pylibjpeg-openjpeg: pip install "stence-bench[htj2k]"'),
])
def test_missing_pixel_handler_names_the_package(tmp_path, monkeypatch, name, syntax, install):
    path = pydicom_as_xa(name, tmp_path)
    if syntax:
        path = edited_copy(path, tmp_path / "relabelled.dcm",
                           lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", syntax))
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(BadRecord) as err:
        read_angiography(path)
    assert err.value.what == "no pixel handler"
    assert err.value.why.endswith(install)


def test_12_bit_jpeg_without_gdcm_names_it_even_with_pillow(tmp_path, monkeypatch):
    """Pillow (when installed) makes JPEG Extended look decodable, but it decodes 8-bit samples only."""
    path = pydicom_as_xa("JPGExtended.dcm", tmp_path)
    monkeypatch.setattr(dicom, "_gdcm_module", lambda: None)
    with pytest.raises(BadRecord) as err:
        read_angiography(path)
    assert err.value.what == "no pixel handler"
    assert err.value.why.endswith('needs python-gdcm: pip install "stence-bench[dicom]"')
