"""Fast WFDB reading: headers parsed with wfdb's own grammar, signal bytes decoded with NumPy.

``wfdb.rdsamp`` spends almost all of its time assembling header fields through pandas (about 4.5 ms of a 4.7 ms
read of a 12-lead, 10 s, 500 Hz record). Here the header is matched with ``wfdb.io.header``'s regular
expressions and the samples read with one ``np.fromfile``, giving the same physical values (mV) as
``wfdb.rdrecord`` to float32 precision (tested on the real records in ../shared/realdata). Formats 16, 61, 80,
160, 212, 24 and 32 are read, in ``.dat`` files and in the CinC ``.mat`` form (``16x1+24``); anything the fast path
cannot read exactly is reported as a :class:`BadRecord`, never guessed.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from wfdb.io.header import rx_record, rx_signal, wfdb_strptime

from ..specs import TWELVE_LEADS
from .records import BadRecord, Record, canonical_lead, to_physical

#: format code -> (numpy dtype, offset subtracted after reading); 212 and 24 are unpacked by hand.
_SIMPLE_FORMATS: dict[str, tuple[str, int]] = {
    "16": ("<i2", 0), "61": (">i2", 0), "80": ("u1", 128), "160": ("<u2", 32768), "32": ("<i4", 0),
}
SUPPORTED_FORMATS = (*_SIMPLE_FORMATS, "212", "24")
#: bytes per sample, for size checks
_BYTES = {"16": 2.0, "61": 2.0, "80": 1.0, "160": 2.0, "32": 4.0, "212": 1.5, "24": 3.0}
#: the WFDB "invalid sample" value of each format (decoded)
_INVALID = {"16": -32768, "61": -32768, "80": -128, "160": -32768, "32": -(2**31), "212": -2048, "24": -(2**23)}
#: a signal file name as wfdb's header grammar has it (``rx_signal``): no folder, so never outside the record's
_FILE_NAME = re.compile(r"~?[-\w]*\.?[\w]*")
_UNITS_TO_MV = {"mv": 1.0, "uv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}
#: formats whose decoded samples always fit int16, so the record keeps its digital samples
_INT16_FORMATS = frozenset({"16", "61", "80", "160", "212"})


@dataclass(frozen=True)
class SignalSpec:
    fmt: str
    byte_offset: int
    adc_gain: float
    baseline: int
    units: str
    name: str


@dataclass
class WfdbHeader:
    record_name: str
    n_sig: int
    fs: float
    sig_len: int | None
    signals: list[SignalSpec]
    #: per signal: the file its samples are in
    file_names: list[str] = field(default_factory=list)
    #: per signal: the 16-bit checksum of its samples, when the header gives one
    checksums: list[int | None] = field(default_factory=list)
    base_time: str | None = None
    base_date: str | None = None
    comments: list[str] = field(default_factory=list)
    block: _SignalBlock | None = field(default=None, repr=False)

    @property
    def time(self) -> str | None:
        """``base_date`` and ``base_time`` as ISO 8601, when the header has a date."""
        return _iso_time(self.base_date, self.base_time) if self.base_date else None

    def signal_files(self, directory: str) -> tuple[str, ...]:
        """The files holding the samples, in signal order, each once."""
        return tuple(os.path.join(directory, f) for f in dict.fromkeys(self.file_names))


@functools.lru_cache(maxsize=4096)
def _iso_time(base_date: str, base_time: str | None) -> str | None:
    try:
        date = dt.datetime.strptime(base_date, "%d/%m/%Y").date()
        clock = wfdb_strptime(base_time) if base_time else dt.time()
    except ValueError:
        return None
    return dt.datetime.combine(date, clock).isoformat()


def _split_signal_line(line: str) -> tuple[str, str | None, int | None]:
    """A signal line -> (template, file name, checksum).

    The lines of one dataset differ mostly in their file name, initial value and checksum (fields 1, 6 and 7);
    the template has those blanked, so all the rest is parsed by wfdb's grammar once per dataset and cached.
    """
    tokens = line.split(maxsplit=8)
    if len(tokens) >= 7 and tokens[6].lstrip("-").isdigit():
        return " ".join(["f", *tokens[1:5], "0", "0", *tokens[7:]]), tokens[0], int(tokens[6])
    m = rx_signal.match(line)
    if m is None:
        return line, None, None
    return line, m["file_name"], int(m["checksum"]) if m["checksum"] else None


@dataclass(frozen=True)
class _SignalBlock:
    """The parsed signal lines of a header, with what reading needs, shared by every header of that shape.

    Signals in a voltage unit are the ECG leads the record keeps (``keep``); the others (a blood pressure in
    mmHg, a pleth in NU, as beside the ECG of PhysioNet's ICU records) are left out, by name (``dropped``)."""

    signals: tuple[SignalSpec, ...]
    leads: tuple[str, ...]  # of the kept signals, as are baseline, gain and int16
    baseline: np.ndarray  # float32 [n_kept]
    gain: np.ndarray  # float32 [n_kept], digital units per millivolt (exactly adc_gain for signals in mV)
    int16: bool  # every kept format's samples fit int16
    keep: tuple[int, ...] = ()
    dropped: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1024)
def _signal_block(templates: tuple[str, ...]) -> _SignalBlock | tuple[str, str]:
    signals = []
    for i, template in enumerate(templates):
        parsed = _parse_signal_template(template, i)
        if isinstance(parsed, tuple):
            return parsed
        signals.append(parsed)
    keep = tuple(i for i, s in enumerate(signals) if s.units.lower() in _UNITS_TO_MV)
    if not keep:
        units = ", ".join(f"{s.name!r} in {s.units!r}" for s in signals)
        return ("no ECG signal", f"no signal in a voltage unit (mV, uV, V): {units}")
    kept = [signals[i] for i in keep]
    baseline = np.array([s.baseline for s in kept], dtype=np.float32)
    gain = np.array([s.adc_gain / _UNITS_TO_MV[s.units.lower()] for s in kept], dtype=np.float32)
    baseline.flags.writeable = gain.flags.writeable = False
    return _SignalBlock(tuple(signals), tuple(canonical_lead(s.name) for s in kept), baseline, gain,
                        all(s.fmt in _INT16_FORMATS for s in kept), keep,
                        tuple(s.name for i, s in enumerate(signals) if i not in keep))


@functools.lru_cache(maxsize=8192)
def _parse_signal_template(line: str, index: int) -> SignalSpec | tuple[str, str]:
    """A signal line -> its spec, or ``(what, why)`` when it cannot be read."""
    m = rx_signal.match(line)
    if m is None:
        return ("bad header", f"cannot parse signal line {index + 1}: {line!r}")
    if m["samps_per_frame"] not in ("", "1") or m["skew"] not in ("", "0"):
        return ("unsupported header", f"signal {index + 1} uses samples-per-frame or skew")
    gain = float(m["adc_gain"]) if m["adc_gain"] else 200.0
    if gain == 0:
        gain = 200.0
    if m["baseline"]:
        baseline = int(m["baseline"])
    else:
        baseline = int(m["adc_zero"]) if m["adc_zero"] else 0
    return SignalSpec(
        fmt=m["fmt"], byte_offset=int(m["byte_offset"] or 0), adc_gain=gain,
        baseline=baseline, units=m["units"] or "mV",
        name=m["sig_name"].strip() or f"sig{index}",
    )


def parse_header(text: str, source: str) -> WfdbHeader:
    """Parse a single-segment WFDB header; a malformed one raises :class:`BadRecord`."""
    lines = [ln.strip() for ln in text.splitlines()]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    comments = [ln[1:].strip() for ln in lines if ln.startswith("#")]
    if not body:
        raise BadRecord(source, "bad header", "no record line")
    rec = rx_record.match(body[0])
    if rec is None:
        raise BadRecord(source, "bad header", f"cannot parse the record line {body[0]!r}")
    if rec["n_seg"]:
        raise BadRecord(source, "unsupported header", "multi-segment records are not supported")
    n_sig = int(rec["n_sig"])
    fields = body[0].split()
    if len(fields) > 2 and fields[2].startswith("-"):  # wfdb's grammar would read it as the counter frequency
        raise BadRecord(source, "bad sampling rate", f"{fields[2].split('/')[0]} Hz in the record line")
    fs = float(rec["fs"]) if rec["fs"] else 250.0
    signal_lines = body[1 : 1 + n_sig]
    if len(signal_lines) != n_sig:
        raise BadRecord(source, "bad header", f"record line declares {n_sig} signals, {len(signal_lines)} found")
    split = [_split_signal_line(line) for line in signal_lines]
    for i, (template, file_name, _) in enumerate(split):
        if file_name is None:
            raise BadRecord(source, "bad header", f"cannot parse signal line {i + 1}: {template!r}")
        if not _FILE_NAME.fullmatch(file_name):  # wfdb's grammar: a plain name, in the header's folder
            raise BadRecord(source, "bad header", f"signal {i + 1}: file name {file_name!r} is not a plain file "
                            "name in the record's folder")
    block = _signal_block(tuple(template for template, _, _ in split))
    if isinstance(block, tuple):
        raise BadRecord(source, *block)
    return WfdbHeader(
        record_name=rec["record_name"], n_sig=n_sig, fs=fs, sig_len=int(rec["sig_len"]) if rec["sig_len"] else None,
        signals=list(block.signals), file_names=[str(name) for _, name, _ in split],
        checksums=[checksum for _, _, checksum in split], base_time=rec["base_time"] or None,
        base_date=rec["base_date"] or None, comments=comments, block=block,
    )


def read_header(path: str | os.PathLike[str]) -> WfdbHeader:
    path = os.fspath(path)
    try:
        with open(path, encoding="latin-1") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise BadRecord(str(path), "missing header", "file not found") from None
    except OSError as exc:
        raise BadRecord(str(path), "unreadable header", str(exc)) from None
    return parse_header(text, path)


def _decode(raw: np.ndarray, fmt: str) -> np.ndarray:
    """Bytes (uint8) of one file -> samples in file order (int16 or int32; no copy for 16, 61 and 32)."""
    if fmt in _SIMPLE_FORMATS:
        dtype, offset = _SIMPLE_FORMATS[fmt]
        values = raw.view(dtype)
        return values.astype(np.int32) - offset if offset else values
    if fmt == "212":  # two 12-bit samples in three bytes; an odd count ends with two bytes
        if raw.size % 3:
            raw = np.concatenate([raw, np.zeros(3 - raw.size % 3, dtype=np.uint8)])
        n_pairs = raw.size // 3
        b = raw.reshape(-1, 3).astype(np.int32)
        first = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
        second = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
        out = np.empty(n_pairs * 2, dtype=np.int32)
        out[0::2], out[1::2] = first, second
        return np.where(out > 2047, out - 4096, out)
    if fmt == "24":
        b = raw[: raw.size // 3 * 3].reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(value >= 1 << 23, value - (1 << 24), value)
    raise AssertionError(fmt)


def read_digital(header: WfdbHeader, directory: str, source: str) -> list[tuple[list[int], np.ndarray]]:
    """The stored integer samples, per signal file: (signal indices, ``[n_samples, n_signals_in_file]`` frames).

    Checked against the header: format, length (truncated or mismatched files) and WFDB invalid-sample markers.
    """
    by_file: dict[str, list[int]] = {}
    for i, sig in enumerate(header.signals):
        if sig.fmt not in SUPPORTED_FORMATS:
            raise BadRecord(source, "unknown format code", f"signal {sig.name!r} has format {sig.fmt}")
        by_file.setdefault(header.file_names[i], []).append(i)
    parts: list[tuple[list[int], np.ndarray]] = []
    for file_name, idx in by_file.items():
        fmts = {header.signals[i].fmt for i in idx}
        offsets = {header.signals[i].byte_offset for i in idx}
        if len(fmts) > 1 or len(offsets) > 1:
            raise BadRecord(source, "unsupported header", f"{file_name} mixes formats or byte offsets")
        fmt, offset = fmts.pop(), offsets.pop()
        path = os.path.join(directory, file_name)
        try:
            size = os.path.getsize(path)
            if size == 0:
                raise BadRecord(str(path), "empty signal file", f"0 bytes (named by {source})")
            if size <= offset:  # numpy would say "negative dimensions are not allowed"
                raise BadRecord(str(path), "truncated signal file",
                                f"{size} bytes; the header puts the first sample at byte {offset}")
            raw = np.fromfile(path, dtype=np.uint8, offset=offset)
        except FileNotFoundError:
            raise BadRecord(str(path), "missing signal file", f"named by {source}") from None
        except (OSError, ValueError) as exc:
            raise BadRecord(str(path), "unreadable signal file", str(exc)) from None
        n_in_file = len(idx)
        available = int(raw.size / (_BYTES[fmt] * n_in_file))
        n = header.sig_len if header.sig_len is not None else available
        if available < n:
            raise BadRecord(str(path), "truncated signal file",
                            f"header says {n} samples per signal, the file holds {available}")
        needed = int(np.ceil(n * n_in_file * _BYTES[fmt]))
        if raw.size - needed >= _BYTES[fmt] * n_in_file:
            raise BadRecord(str(path), "header/signal length mismatch",
                            f"header says {n} samples per signal, the file holds {available}")
        if parts and parts[0][1].shape[0] != n:
            raise BadRecord(source, "header/signal length mismatch", "signal files hold different lengths")
        frames = _decode(raw[:needed], fmt)[: n * n_in_file].reshape(n, n_in_file)
        if frames.size and frames.min() == _INVALID[fmt]:  # the marker is each format's lowest value
            raise BadRecord(str(path), "invalid samples",
                            f"{int((frames == _INVALID[fmt]).sum())} sample(s) marked invalid (NaN)")
        parts.append((idx, frames))
    return parts


def read_samples(header: WfdbHeader, directory: str, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The record's digital samples ``[n_leads, n_samples]`` of its ECG signals (int16 when the formats allow,
    else int32) with the per-lead baseline and gain (digital units per mV), checksums verified on every signal.

    ``(digital - baseline) / gain`` in float32 (:func:`stence_bench.data.records.to_physical`) gives the same values
    as ``wfdb.rdrecord`` gives in float64, to float32 precision (bit-identical on the real records tested).
    """
    block = header.block
    assert block is not None, "headers come from parse_header"
    parts = read_digital(header, directory, source)
    every16 = all(s.fmt in _INT16_FORMATS for s in header.signals)
    digital = np.empty((header.n_sig, parts[0][1].shape[0]), dtype=np.int16 if every16 else np.int32)
    for idx, frames in parts:
        if len(parts) == 1:
            digital[:] = frames.T
        else:
            digital[idx] = frames.T
    _verify_checksums(header, digital, source)
    if len(block.keep) != header.n_sig:  # the ECG leads only
        digital = digital[list(block.keep)]
        if block.int16 and digital.dtype != np.int16:
            digital = digital.astype(np.int16)
    return digital, block.baseline, block.gain


def _verify_checksums(header: WfdbHeader, digital: np.ndarray, source: str) -> None:
    """WFDB checksums: the 16-bit sum of each signal's digital samples."""
    if all(c is None for c in header.checksums):
        return
    sums = digital.sum(axis=1, dtype=np.int32)  # may wrap, which keeps the sum modulo 65536
    for i, expected in enumerate(header.checksums):
        if expected is not None and (int(sums[i]) - expected) % 65536 != 0:
            raise BadRecord(source, "checksum mismatch",
                            f"signal {header.signals[i].name!r} does not match its header checksum")


def read_wfdb(path: str | os.PathLike[str], *, record_id: str | None = None) -> tuple[Record, WfdbHeader]:
    """Read a WFDB record (``path`` with or without ``.hea``) into a checked :class:`Record` in mV."""
    path = os.fspath(path)
    hea = path if path.endswith(".hea") else path + ".hea"
    header = read_header(hea)
    digital, baseline, gain = read_samples(header, os.path.dirname(hea), hea)
    samples: dict[str, Any]
    if digital.dtype == np.int16:
        samples = {"digital": digital, "baseline": baseline, "gain": gain}
    else:
        samples = {"signal": to_physical(digital, baseline, gain)}
    record = Record(
        record_id=record_id or header.record_name,
        **samples,
        fs=header.fs,
        leads=header.block.leads if header.block else (),
        source=hea,
        files=(hea, *header.signal_files(os.path.dirname(hea))),
        time=header.time,
        meta={"comments": header.comments} if header.comments else {},
    )
    if header.block is not None and header.block.dropped:
        record.meta["dropped_channels"] = list(header.block.dropped)
    return record.check(), header


_WFDB_LEAD_NAMES = {"aVR": "AVR", "aVL": "AVL", "aVF": "AVF"}  # as PTB-XL headers spell them


def write_wfdb(path: str | os.PathLike[str], signal: np.ndarray, fs: float, leads: Sequence[str] = TWELVE_LEADS, *,
               gain: float = 1000.0, comments: Sequence[str] = (), base_date: str | None = None,
               base_time: str = "00:00:00") -> np.ndarray:
    """Write ``signal`` (mV, ``[n_leads, n_samples]``) as a format-16 WFDB record ``path`` (.hea + .dat), with
    checksums and initial values; ``base_date`` is ``DD/MM/YYYY`` (and ``base_time`` ``HH:MM:SS``).

    Returns the digital samples written, ``[n_leads, n_samples]`` int16.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(signal * gain), -32767, 32767).astype("<i2")
    digital.T.tofile(path.with_name(path.name + ".dat"))
    n_leads, n_samples = digital.shape
    record_line = f"{path.name} {n_leads} {fs:g} {n_samples}" + (f" {base_time} {base_date}" if base_date else "")
    lines = [record_line]
    for i, lead in enumerate(leads):
        checksum = int(digital[i].astype(np.int64).sum()) % 65536
        checksum = checksum - 65536 if checksum > 32767 else checksum
        lines.append(f"{path.name}.dat 16 {gain:g}(0)/mV 16 0 {int(digital[i, 0])} {checksum} 0 "
                     f"{_WFDB_LEAD_NAMES.get(lead, lead)}")
    lines += [f"# {c}" for c in comments]
    path.with_name(path.name + ".hea").write_text("\n".join(lines) + "\n")
    return digital
