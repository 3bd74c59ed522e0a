"""DICOM readers: 12-lead ECG waveforms (:func:`read_dicom_ecg`) and X-ray angiograms (:func:`read_angiography`).

Both raise :class:`BadRecord` for anything they cannot ingest, never a raw pydicom error. Compressed pixel data
is decoded by pydicom's pixel handlers: RLE by pydicom itself, JPEG (baseline, extended, lossless), JPEG-LS and
JPEG 2000 by ``python-gdcm`` (GDCM is BSD-3-Clause; the extra ``dicom``). pydicom's gdcm plugin refuses 12-bit JPEG Extended, which
GDCM decodes, so this module adds a gdcm plugin of its own for it (see :func:`is_available`). High-Throughput JPEG 2000
needs ``pylibjpeg`` and ``pylibjpeg-openjpeg`` (MIT; the extra ``htj2k``); nothing here needs GPL-licensed
``pylibjpeg-libjpeg``.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.uid as uids
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import UID
from pydicom.valuerep import DA, DT, TM
from pydicom.waveforms.numpy_handler import WAVEFORM_DTYPES

from ..extras import install_hint
from .records import BadRecord, Record, canonical_lead

__all__ = ["ECG_SOP_PREFIX", "XA_SOP_CLASSES", "Angiogram", "read_angiography", "read_dicom_ecg"]

#: Channel Sensitivity Units (UCUM code, or its meaning) -> factor to millivolts; matched case-insensitively.
_TO_MV = {"uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "microvolt": 1e-3, "mv": 1.0, "millivolt": 1.0}
#: All ECG waveform SOP classes (12-lead, general, ambulatory, general 32-bit) share this prefix.
ECG_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.9.1."
XA_SOP_CLASSES = {uids.XRayAngiographicImageStorage, uids.EnhancedXAImageStorage,
                   "1.2.840.10008.5.1.4.1.1.12.3"}  # the retired biplane XA storage
_GDCM = f"python-gdcm: {install_hint('dicom')}"
_OPENJPEG = f"pylibjpeg-openjpeg: {install_hint('htj2k')}"  # HTJ2K: no gdcm support
#: What to install when pydicom has no working decoder for a transfer syntax (the package, and its extra).
_HANDLER_PACKAGES = {
    uids.JPEGBaseline8Bit: _GDCM, uids.JPEGExtended12Bit: _GDCM, uids.JPEGLossless: _GDCM,
    uids.JPEGLosslessSV1: _GDCM, uids.JPEGLSLossless: _GDCM, uids.JPEGLSNearLossless: _GDCM,
    uids.JPEG2000Lossless: _GDCM, uids.JPEG2000: _GDCM, uids.HTJ2KLossless: _OPENJPEG,
    uids.HTJ2KLosslessRPCL: _OPENJPEG, uids.HTJ2K: _OPENJPEG, uids.RLELossless: "numpy: pip install numpy",
}
#: Label of this module's decoding plugin for JPEG Extended in pydicom's decoder.
_GDCM_JPEG_EXTENDED = "stence-bench-gdcm"


# ----------------------------------------------------------------------------------------------- ECG waveforms


def read_dicom_ecg(path: str | Path, *, group: str | int = "rhythm", record_id: str | None = None) -> Record:
    """Read one multiplex group of a DICOM ECG waveform as a :class:`Record` in millivolts.

    ``group`` is a name matched case-insensitively against *Multiplex Group Label*, whole or by the start of a
    word (``"rhythm"`` finds ``RHYTHM``, ``"median"`` finds ``MEDIAN BEAT``), or an index into *Waveform
    Sequence*. ``record_id`` defaults to the SOP Instance UID (whatever the group), else the file stem. Samples become
    ``raw * ChannelSensitivity * ChannelSensitivityCorrectionFactor + ChannelBaseline`` (pydicom's decoding, in
    the units of *Channel Sensitivity Units Sequence*), then millivolts.
    """
    path = Path(path)
    with _no_raw_errors(path):
        return _read_ecg(path, group, record_id)


def _read_ecg(path: Path, group: str | int, record_id: str | None) -> Record:
    src = str(path)
    ds = _read(path)
    sop = str(ds.get("SOPClassUID", "") or "")
    modality = _text(ds.get("Modality"))
    if "WaveformSequence" not in ds or not ds.WaveformSequence:
        raise BadRecord(src, "not an ECG waveform",
                        f"no Waveform Sequence (Modality {modality or 'absent'}, {_uid_name(sop)})")
    if not sop.startswith(ECG_SOP_PREFIX) and modality != "ECG":
        raise BadRecord(src, "not an ECG waveform", f"waveform of {_uid_name(sop)}, Modality {modality or 'absent'}")
    groups = list(ds.WaveformSequence)
    index = _select_group(src, groups, group)
    item = groups[index]
    channels = list(item.get("ChannelDefinitionSequence") or [])
    n_channels = item.get("NumberOfWaveformChannels")
    if not channels or n_channels != len(channels):
        raise BadRecord(src, "corrupt waveform",
                        f"group {index} declares {n_channels} channel(s) but defines {len(channels)}")
    leads = tuple(_lead_name(ch, j) for j, ch in enumerate(channels))
    factors = np.array([_to_mv_factor(src, ch, lead, j) for j, (ch, lead) in enumerate(zip(channels, leads))])
    fs = as_float(item.get("SamplingFrequency"))
    if fs is None:
        raise BadRecord(src, "bad sampling rate",
                        f"group {index} has no usable Sampling Frequency ({item.get('SamplingFrequency')!r})")
    sample_format = (item.get("WaveformBitsAllocated"), _text(item.get("WaveformSampleInterpretation")))
    if sample_format not in WAVEFORM_DTYPES:
        raise BadRecord(src, "corrupt waveform", "group {}: unsupported sample format: {} bits, {!r}".format(
            index, *sample_format))
    try:
        wave = ds.waveform_array(index)  # [samples, channels] in the channel sensitivity units
    except Exception as exc:  # noqa: BLE001 - any pydicom failure here means the data do not fit the header
        raise BadRecord(src, "corrupt waveform", f"group {index}: {type(exc).__name__}: {_one_line(exc)}") from None
    signal = np.ascontiguousarray((wave * factors[None, :]).T, dtype=np.float32)
    meta = _ecg_meta(ds, item, index, channels)
    rid = record_id or _text(ds.get("SOPInstanceUID")) or path.stem
    record = Record(record_id=rid, signal=signal, fs=fs, leads=leads, source=src,
                    patient_id=_text(ds.get("PatientID")) or None, time=_iso_time(ds), meta=meta)
    return record.check()


def _select_group(src: str, groups: list[Dataset], group: str | int) -> int:
    """Index of the multiplex group named or numbered ``group``."""
    labels = [_text(g.get("MultiplexGroupLabel")) for g in groups]
    if isinstance(group, int) and not isinstance(group, bool):
        if 0 <= group < len(groups):
            return group
    elif isinstance(group, str):
        want = group.strip().lower()
        exact = [i for i, label in enumerate(labels) if label.lower() == want]
        if exact:
            return exact[0]
        partial = [i for i, label in enumerate(labels)
                   if want and any(word.startswith(want) for word in [label.lower(), *label.lower().split()])]
        if len(partial) == 1:
            return partial[0]
        if len(partial) > 1:
            raise BadRecord(src, "ambiguous multiplex group", f"{group!r} matches {_describe_groups(groups, partial)}")
        if want == "rhythm" and not any(labels):
            # Unlabelled groups: the rhythm is the only group, or the only one that is not derived.
            original = [i for i, g in enumerate(groups) if _text(g.get("WaveformOriginality")).upper() == "ORIGINAL"]
            if len(groups) == 1 or len(original) == 1:
                return 0 if len(groups) == 1 else original[0]
    raise BadRecord(src, "unknown multiplex group",
                    f"no group {group!r}; the file holds {_describe_groups(groups, range(len(groups)))}")


def _describe_groups(groups: list[Dataset], indices: Any) -> str:
    return ", ".join(f"{i} {_text(groups[i].get('MultiplexGroupLabel')) or '(unlabelled)'!r} "
                     f"({groups[i].get('NumberOfWaveformSamples')} samples)" for i in indices)


def _lead_name(channel: Dataset, j: int) -> str:
    """Canonical lead name from Channel Source Sequence (e.g. ``Lead I (Einthoven)`` -> ``I``), else the label."""
    meaning = ""
    source = channel.get("ChannelSourceSequence")
    if source:
        meaning = _text(source[0].get("CodeMeaning"))
    meaning = meaning or _text(channel.get("ChannelLabel"))
    return canonical_lead(meaning) if meaning else f"channel {j + 1}"


def _to_mv_factor(src: str, channel: Dataset, lead: str, j: int) -> float:
    """Factor from the channel's sensitivity units to millivolts; checks the calibration pydicom will apply."""
    where = f"channel {j + 1} ({lead})"
    if channel.get("ChannelSensitivity") is None:
        raise BadRecord(src, "unsupported units", f"{where} has no Channel Sensitivity: samples are uncalibrated")
    for keyword in ("ChannelSensitivity", "ChannelSensitivityCorrectionFactor", "ChannelBaseline"):
        if keyword in channel and as_float(channel.get(keyword)) is None:
            raise BadRecord(src, "corrupt waveform", f"{where} has an empty or non-numeric {keyword}")
    units = channel.get("ChannelSensitivityUnitsSequence")
    if not units:
        raise BadRecord(src, "unsupported units", f"{where} has a sensitivity but no Channel Sensitivity Units")
    code = _text(units[0].get("CodeValue")) or _text(units[0].get("CodeMeaning"))
    factor = _TO_MV.get(code.lower())
    if factor is None:
        raise BadRecord(src, "unsupported units", f"{where} is in {code or 'no unit'!r}; only uV and mV are read")
    return factor


def _ecg_meta(ds: Dataset, item: Dataset, index: int, channels: list[Dataset]) -> dict[str, Any]:
    """JSON-able extras: device, group, patient age and sex, filters, annotation text and measurements."""
    meta: dict[str, Any] = {
        "manufacturer": _text(ds.get("Manufacturer")) or None,
        "model": _text(ds.get("ManufacturerModelName")) or None,
        "multiplex_group": _text(item.get("MultiplexGroupLabel")) or None,
        "multiplex_group_index": index,
        "sex": _text(ds.get("PatientSex")) or None,
        "age": _age_years(_text(ds.get("PatientAge"))),
        # DICOM's Filter Low Frequency is the high-pass corner, Filter High Frequency the low-pass one.
        "highpass_hz": _per_channel(channels, "FilterLowFrequency"),
        "lowpass_hz": _per_channel(channels, "FilterHighFrequency"),
        "notch_hz": _per_channel(channels, "NotchFilterFrequency"),
    }
    texts, measurements = _annotations(ds)
    meta.update(annotations=texts, measurements=measurements)
    return {key: value for key, value in meta.items() if value not in (None, [], "")}


def _annotations(ds: Dataset) -> tuple[list[str], list[dict[str, Any]]]:
    """Statements (free or coded text) and measurements (``{"name", "value", "unit"}``) of the annotations.

    Fiducial points (onsets, offsets as sample positions) are left out.
    """
    texts: list[str] = []
    measurements: list[dict[str, Any]] = []
    for item in ds.get("WaveformAnnotationSequence") or []:
        text = _text(item.get("UnformattedTextValue"))
        if text:
            texts.append(text)
        concept = _code_meaning(item.get("ConceptNameCodeSequence"))
        if "NumericValue" in item and concept:
            raw = item.NumericValue
            values = [as_float(v) for v in (raw if isinstance(raw, (list, MultiValue)) else [raw])]
            values = [v for v in values if v is not None]
            if values:
                unit = item.get("MeasurementUnitsCodeSequence")
                measurements.append({"name": concept, "value": values[0] if len(values) == 1 else values,
                                     "unit": (_text(unit[0].get("CodeValue")) or None) if unit else None})
        elif "ConceptCodeSequence" in item:
            coded = _code_meaning(item.ConceptCodeSequence)
            if coded:
                texts.append(coded)
    return texts, measurements


def _per_channel(channels: list[Dataset], keyword: str) -> float | list[float | None] | None:
    """One value when all channels agree, else one per channel; None when no channel has it."""
    values = [as_float(ch.get(keyword)) for ch in channels]
    if all(v is None for v in values):
        return None
    return values[0] if len(set(values)) == 1 else values


def _age_years(text: str) -> float | int | None:
    """DICOM Age String (``042Y``, ``006M``, ``003W``, ``010D``) in years."""
    if len(text) != 4 or not text[:3].isdigit() or text[3].upper() not in "YMWD":
        return None
    n, unit = int(text[:3]), text[3].upper()
    return n if unit == "Y" else round(n / {"M": 12, "W": 52.1775, "D": 365.25}[unit], 3)


# --------------------------------------------------------------------------------------------------- angiograms


@dataclass
class Angiogram:
    """One X-ray angiography run: ``frames`` is ``[n_frames, rows, cols]`` (``[..., 3]`` for colour), as stored.

    Values are the stored pixel values (no windowing or modality LUT), within ``bits_stored`` bits.
    """

    frames: np.ndarray
    source: str
    #: The transfer syntax's name, e.g. ``RLE Lossless``.
    transfer_syntax: str
    bits_stored: int
    #: Frame Time, or the mean increment of Frame Time Vector, in ms; None for a still.
    frame_time_ms: float | None = None
    #: Positioner Primary Angle (LAO +, RAO -) and Secondary Angle (cranial +, caudal -), degrees.
    primary_angle: float | None = None
    secondary_angle: float | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    #: Acquisition time, ISO 8601, when known.
    time: str | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


def read_angiography(path: str | Path) -> Angiogram:
    """Read an X-ray angiogram (Modality XA, or an XA SOP class) with all its frames decoded."""
    path = Path(path)
    with _no_raw_errors(path):
        return _read_angiogram(path)


def _read_angiogram(path: Path) -> Angiogram:
    src = str(path)
    ds = _read(path)
    modality = _text(ds.get("Modality")).upper()
    sop = str(ds.get("SOPClassUID", "") or "")
    if modality != "XA" and sop not in XA_SOP_CLASSES:
        raise BadRecord(src, "not an angiogram", f"Modality {modality or 'absent'} ({_uid_name(sop)}), not XA")
    if "PixelData" not in ds:
        raise BadRecord(src, "no pixel data", "the data set has no (7FE0,0010) Pixel Data element")
    ts = _transfer_syntax(src, ds)
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    n_frames = _int(ds.get("NumberOfFrames")) or 1
    spp = _int(ds.get("SamplesPerPixel")) or 1
    bits_stored = _int(ds.get("BitsStored")) or _int(ds.get("BitsAllocated"))
    _check_decoder(src, ts, bits_stored or 0)
    if not rows or not cols or not bits_stored:
        raise BadRecord(src, "corrupt pixel data", f"Rows={rows}, Columns={cols}, Bits Stored={bits_stored}")
    if ts == uids.JPEGExtended12Bit and bits_stored > 8:
        # Straight to the plugin that decodes it: the others fail first, each logging a traceback to 'pydicom'.
        ds.pixel_array_options(decoding_plugin=_GDCM_JPEG_EXTENDED)
    try:
        pixels = ds.pixel_array  # YCbCr is converted to RGB
    except Exception as exc:  # noqa: BLE001 - decoders raise anything; the message says which and why
        raise BadRecord(src, "corrupt pixel data", f"{ts.name} pixel data failed to decode: {_one_line(exc)}") from None
    shape = (n_frames, rows, cols) + ((spp,) if spp > 1 else ())
    if pixels.size != math.prod(shape):
        raise BadRecord(src, "corrupt pixel data", f"decoded {pixels.shape}, header says {shape}")
    return Angiogram(
        frames=pixels.reshape(shape), source=src, transfer_syntax=ts.name, bits_stored=bits_stored,
        frame_time_ms=_frame_time_ms(ds), primary_angle=_positioner(ds, "PositionerPrimaryAngle"),
        secondary_angle=_positioner(ds, "PositionerSecondaryAngle"), patient_id=_text(ds.get("PatientID")) or None,
        study_uid=_text(ds.get("StudyInstanceUID")) or None, time=_iso_time(ds),
    )


def _transfer_syntax(src: str, ds: Dataset) -> UID:
    """The file's transfer syntax; for a bare data set (no file meta), the encoding it was read with."""
    ts = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if ts:
        return UID(str(ts))
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        raise BadRecord(src, "corrupt pixel data", "no Transfer Syntax UID and the encoding is unknown")
    encodings: dict[tuple[Any, Any], UID] = {(True, True): uids.ImplicitVRLittleEndian,
                                             (False, True): uids.ExplicitVRLittleEndian,
                                             (False, False): uids.ExplicitVRBigEndian}
    ts = encodings.get((implicit, little), uids.ImplicitVRLittleEndian)
    ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ts


def _check_decoder(src: str, ts: UID, bits_stored: int) -> None:
    """Raise :class:`BadRecord` naming the package to install when no pixel handler can decode ``ts``."""
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise BadRecord(src, "unsupported transfer syntax",
                        f"pydicom has no decoder for {ts.name} ({ts}); transcode it first") from None
    if is_available(ts):
        _add_gdcm_jpeg_extended(decoder)
    # Pillow and pydicom's gdcm plugin decode 8-bit JPEG Extended only: more bits need this module's plugin.
    twelve_bit = ts == uids.JPEGExtended12Bit and bits_stored > 8
    if not (is_available(ts) if twelve_bit else decoder.is_available):
        packages = _HANDLER_PACKAGES.get(ts, _GDCM)
        raise BadRecord(src, "no pixel handler", f"no installed package decodes {ts.name}, it needs {packages}")


# pydicom decoding plugin (the protocol asks for ``DECODER_DEPENDENCIES`` and ``is_available`` in the module):
# GDCM decodes 8- and 12-bit JPEG Extended, but pydicom's own gdcm plugin refuses 12 bits. This one is pydicom's
# gdcm plugin (pydicom.pixels.decoders.gdcm) for JPEG Extended without that refusal; pydicom's runner still does
# the rest (frames, sign, colour space), as for any plugin.

#: What this module's JPEG Extended plugin needs, as pydicom lists a plugin's dependencies.
DECODER_DEPENDENCIES = {uids.JPEGExtended12Bit: ("gdcm>=3.0.10",)}


def is_available(uid: str) -> bool:
    """True if this module's JPEG Extended plugin can decode ``uid`` (it needs ``python-gdcm``)."""
    return uid == uids.JPEGExtended12Bit and _gdcm_module() is not None


def _add_gdcm_jpeg_extended(decoder: Any) -> None:
    """Add this module's plugin to pydicom's JPEG Extended decoder, after its own plugins (once per process).

    Only called while python-gdcm is importable: pydicom decides a plugin's availability once, when it is added.
    """
    if _GDCM_JPEG_EXTENDED not in decoder.available_plugins:
        decoder.add_plugin(_GDCM_JPEG_EXTENDED, (__name__, "_decode_jpeg_extended_frame"))


def _decode_jpeg_extended_frame(src: bytes, runner: Any) -> bytes:
    """Decode one JPEG Extended frame (8 or 12 bits) with GDCM: the plugin function pydicom calls."""
    gdcm = _gdcm_module()
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    pi_type = gdcm.PhotometricInterpretation.GetPIType(runner.photometric_interpretation)
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi_type))
    if runner.samples_per_pixel > 1:
        image.SetPlanarConfiguration(runner.planar_configuration)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(uids.JPEGExtended12Bit))))
    bits_stored = runner.bits_stored
    image.SetPixelFormat(gdcm.PixelFormat(runner.samples_per_pixel, runner.bits_allocated, bits_stored,
                                          bits_stored - 1, runner.pixel_representation))
    with _native_stderr() as said:
        frame = image.GetBuffer()  # None when GDCM cannot decode it
    if frame is None:
        # GDCM tries the wrong precision first, and says so even when the real trouble is elsewhere.
        why = "; ".join(line.strip() for line in said
                        if line.strip() and not line.startswith("Unsupported JPEG data precision"))
        raise ValueError("GDCM could not decode the JPEG codestream" + (f" ({why})" if why else ""))
    return frame.encode("utf-8", "surrogateescape")  # GDCM hands the bytes over as a str


def _gdcm_module() -> Any:
    """The ``gdcm`` module of python-gdcm, or None when it is not installed (imported on first use)."""
    try:
        import gdcm
    except ImportError:
        return None
    return gdcm


_STDERR_LOCK = threading.Lock()


@contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 meanwhile: the lines, once the block ends.

    GDCM's libjpeg prints its diagnostics there, even on success: a 12-bit JPEG is first tried as 16-bit
    ("Unsupported JPEG data precision 12"). Kept out of the console, they explain a failure instead. Anything
    another thread writes to stderr meanwhile (one frame's decode) lands here too.
    """
    lines: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to take over (closed, or replaced)
            yield lines
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _frame_time_ms(ds: Dataset) -> float | None:
    """Frame Time, else the mean of Frame Time Vector's increments (its leading 0 is the first frame's)."""
    frame_time = as_float(ds.get("FrameTime"))
    if frame_time is not None and frame_time > 0:
        return frame_time
    vector = ds.get("FrameTimeVector")
    if vector is None:
        return None
    values = [v for v in (as_float(x) for x in (vector if isinstance(vector, (list, MultiValue)) else [vector]))
              if v is not None]
    if len(values) > 1 and values[0] == 0:
        values = values[1:]
    return float(np.mean(values)) if values and np.mean(values) > 0 else None


def _positioner(ds: Dataset, keyword: str) -> float | None:
    """A positioner angle: top level, else the Enhanced XA shared (then first per-frame) functional group."""
    value = as_float(ds.get(keyword))
    if value is not None:
        return value
    for groups in (ds.get("SharedFunctionalGroupsSequence"), ds.get("PerFrameFunctionalGroupsSequence")):
        if groups:
            positions = groups[0].get("PositionerPositionSequence")
            if positions:
                value = as_float(positions[0].get(keyword))
                if value is not None:
                    return value
    return None


# ------------------------------------------------------------------------------------------------------- shared


@contextmanager
def _no_raw_errors(path: Path) -> Iterator[None]:
    """Turn any error that is not already a :class:`BadRecord` (a bad value pydicom meets late) into one; pydicom's
    warnings about odd values stay quiet (what is wrong is said in the record's quarantine reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except BadRecord:
        raise
    except Exception as exc:  # noqa: BLE001 - readers quarantine, they never crash an ingestion run
        raise BadRecord(str(path), "corrupt DICOM", f"{type(exc).__name__}: {_one_line(exc)}") from None


def file_problem(path: str | Path) -> BadRecord | None:
    """What is wrong with a DICOM file that a quick look could not classify (a short header read failed, or it
    names no Modality and no SOP class), in our words: the full reader's diagnosis (cut short, no DICOM marker),
    or None when the file reads whole."""
    try:
        with _no_raw_errors(Path(path)):
            _read(Path(path))
    except BadRecord as bad:
        return bad
    return None


def not_an_ecg(path: str, modality: str, sop: str) -> BadRecord:
    """A whole DICOM file that is neither an ECG waveform nor an angiogram."""
    if not modality and not sop:
        return BadRecord(path, "not an ECG", "the file names no Modality and no SOP Class UID")
    return BadRecord(path, "not an ECG", f"Modality {modality or 'absent'}, {_uid_name(sop)}")


def _read(path: Path) -> Dataset:
    """The data set at ``path``; a :class:`BadRecord` for a missing, unreadable or non-DICOM file."""
    src = str(path)
    if not path.is_file():
        raise BadRecord(src, "file not found", "no such file" if not path.exists() else "not a regular file")
    try:
        ds = pydicom.dcmread(path)
        _check_complete(path, ds)
        return ds
    except BadRecord:
        raise
    except InvalidDicomError:
        pass  # no preamble and 'DICM' marker: perhaps a bare data set, tried below
    except PermissionError as exc:
        raise BadRecord(src, "unreadable file", exc.strerror or "permission denied") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, EOFError) or "No tag to read" in str(exc):  # pydicom's words for a file cut short
            raise BadRecord(src, "corrupt DICOM", f"truncated: the file ({path.stat().st_size} bytes) ends inside "
                            "a data element") from None
        raise BadRecord(src, "corrupt DICOM", f"truncated or damaged: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises ValueError, ... on damaged files
        raise BadRecord(src, "corrupt DICOM", f"truncated or damaged: {_one_line(exc)}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            forced: Dataset | None = pydicom.dcmread(path, force=True)
        except Exception:  # noqa: BLE001
            forced = None
    if forced is None or not _text(forced.get("SOPClassUID")):
        raise BadRecord(src, "not DICOM", "no 'DICM' marker at byte 128 and no DICOM data set at the start")
    return forced


def _check_complete(path: Path, ds: Dataset) -> None:
    """Raise :class:`BadRecord` if the file ends inside an element: pydicom reads a short value silently."""
    src = str(path)
    if not len(ds):
        raise BadRecord(src, "corrupt DICOM", "truncated: no data elements after the file meta information")
    for part in (getattr(ds, "file_meta", None), ds):
        if not part:
            continue
        last = part.get_item(max(part.keys()))  # still raw: its declared length and position are known
        length, value = getattr(last, "length", None), getattr(last, "value", None)
        if length is None or length == 0xFFFFFFFF:
            continue
        if isinstance(value, bytes) and len(value) < length:
            raise BadRecord(src, "corrupt DICOM",
                            f"truncated: the file ends inside element {last.tag} ({len(value)} of {length} bytes)")
        tell = getattr(last, "value_tell", None)
        if part is ds and tell is not None and 0 < path.stat().st_size - (tell + length) < 8:
            raise BadRecord(src, "corrupt DICOM", f"truncated: the file ends inside the tag after {last.tag}")


def _iso_time(ds: Dataset) -> str | None:
    """ISO 8601 time: Acquisition DateTime, else Acquisition, Content or Study Date and Time."""
    tz = _tz(_text(ds.get("TimezoneOffsetFromUTC")))
    stamp = _text(ds.get("AcquisitionDateTime"))
    if stamp:
        try:
            value: datetime = DT(stamp)
            if value.tzinfo is None and tz is not None:
                value = value.replace(tzinfo=tz)
            return value.isoformat()
        except (ValueError, TypeError):
            pass
    for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"),
                             ("StudyDate", "StudyTime")):
        date_text, time_text = _text(ds.get(date_kw)), _text(ds.get(time_kw))
        if not date_text:
            continue
        try:
            day = DA(date_text)
        except (ValueError, TypeError):
            continue
        try:
            clock = TM(time_text) if time_text else None
        except (ValueError, TypeError):
            clock = None
        if clock is None:
            return day.isoformat()
        return datetime.combine(day, clock, tzinfo=clock.tzinfo or tz).isoformat()
    return None


def _tz(text: str) -> timezone | None:
    """``+0100`` / ``-0500`` as a timezone."""
    if len(text) != 5 or text[0] not in "+-" or not text[1:].isdigit():
        return None
    offset = timedelta(hours=int(text[1:3]), minutes=int(text[3:]))
    return timezone(-offset if text[0] == "-" else offset)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def as_float(value: Any) -> float | None:
    """A DICOM value as a finite float, or None (empty, non-numeric, infinite or NaN)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = as_float(value)
    return None if number is None else int(number)


def _code_meaning(sequence: Any) -> str:
    return _text(sequence[0].get("CodeMeaning")) if sequence else ""


def _uid_name(uid: str) -> str:
    if not uid:
        return "no SOP Class UID"
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__
