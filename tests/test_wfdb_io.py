"""The fast WFDB reader against wfdb.rdrecord, on the real records and on every format it claims."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from stence_bench.data.fake import noise_ecg
from stence_bench.data.wfdb_io import write_wfdb
from stence_bench.data.records import BadRecord
from stence_bench.data.wfdb_io import parse_header, read_wfdb


def test_every_real_wfdb_record_equals_wfdb_rdrecord(realdata):
    headers = sorted((realdata / "cinc2021").glob("*.hea")) + [realdata / "ptb-xl/records100/00000/00001_lr.hea"]
    assert len(headers) == 26
    for hea in headers:
        record, header = read_wfdb(hea)
        reference = wfdb.rdrecord(str(hea.with_suffix("")))
        expected = reference.p_signal.T.astype(np.float32)
        assert record.physical().dtype == np.float32 and record.shape == expected.shape
        np.testing.assert_array_max_ulp(record.physical(), expected, maxulp=1)
        assert record.fs == reference.fs
        assert record.leads[:6] == ("I", "II", "III", "aVR", "aVL", "aVF")
        assert header.comments == [c.strip() for c in reference.comments]


def test_header_comments_and_mat_offset(realdata):
    record, header = read_wfdb(realdata / "cinc2021" / "HR06000")
    assert header.signals[0].fmt == "16" and header.signals[0].byte_offset == 24
    assert record.meta["comments"][:3] == ["Age: 59", "Sex: Female", "Dx: 164934002,426783006"]
    assert record.physical().shape == (12, 5000)


def _encode(digital: np.ndarray, fmt: str) -> bytes:
    """Frames of digital samples -> bytes, for the formats wfdb cannot write (it reads them all)."""
    frames = digital.T.reshape(-1)
    if fmt == "61":
        return frames.astype(">i2").tobytes()
    if fmt == "160":
        return (frames.astype(np.int32) + 32768).astype("<u2").tobytes()
    if fmt == "212":
        values = (frames.astype(np.int32) & 0xFFF)
        if values.size % 2:
            values = np.append(values, 0)
        a, b = values[0::2], values[1::2]
        packed = np.stack([a & 0xFF, ((a >> 8) & 0x0F) | ((b >> 4) & 0xF0), b & 0xFF], axis=1).astype(np.uint8)
        return packed.tobytes()
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["16", "61", "80", "160", "212", "24", "32"])
def test_formats_match_wfdb(tmp_path, fmt):
    rng = np.random.default_rng(1)
    signal = noise_ecg(rng, 3, 777, 250).T.astype(np.float64)  # odd length: 212 packs an incomplete pair
    if fmt in ("16", "80", "24", "32"):
        digital_bits = {"80": 7}.get(fmt, 15)
        gain = min(1000.0, (2 ** (digital_bits - 1) - 2) / np.abs(signal).max())
        wfdb.wrsamp("rec", fs=250, units=["mV"] * 3, sig_name=["I", "II", "V1"], p_signal=signal, fmt=[fmt] * 3,
                    adc_gain=[gain] * 3, baseline=[3, -2, 0], write_dir=str(tmp_path))
    else:
        bits = 12 if fmt == "212" else 16
        gain = (2 ** (bits - 1) - 10) / np.abs(signal).max()
        digital = np.round(signal.T * gain).astype(np.int64) + np.array([[3], [-2], [0]])
        (tmp_path / "rec.dat").write_bytes(_encode(digital, fmt))
        lines = [f"rec 3 250 {digital.shape[1]}"] + [
            f"rec.dat {fmt} {gain:.6f}({b})/mV {bits} 0 {digital[i, 0]} {int(digital[i].sum()) % 65536} 0 {n}"
            for i, (b, n) in enumerate(zip((3, -2, 0), ("I", "II", "V1")))
        ]
        (tmp_path / "rec.hea").write_text("\n".join(lines) + "\n")
    record, _ = read_wfdb(tmp_path / "rec")
    expected = wfdb.rdrecord(str(tmp_path / "rec")).p_signal.T.astype(np.float32)
    assert np.abs(expected).max() > 0.1  # the file holds a real signal
    np.testing.assert_array_max_ulp(record.physical(), expected, maxulp=1)
    assert record.leads == ("I", "II", "V1")


def test_units_other_than_millivolts_are_converted(tmp_path):
    signal = noise_ecg(np.random.default_rng(2), 2, 500, 500)
    wfdb.wrsamp("uv", fs=500, units=["uV", "mV"], sig_name=["I", "II"], p_signal=(signal * [[1000], [1]]).T.astype(float),
                fmt=["16", "16"], adc_gain=[1.0, 1000.0], baseline=[0, 0], write_dir=str(tmp_path))
    record, _ = read_wfdb(tmp_path / "uv")
    np.testing.assert_allclose(record.physical(), signal, atol=2e-3)


def _write(tmp_path, name="r", n=1000):
    signal = noise_ecg(np.random.default_rng(3), 12, n, 500)
    write_wfdb(tmp_path / name, signal, 500)
    return tmp_path / name


def test_generated_records_read_back_by_wfdb_and_by_us(tmp_path):
    path = _write(tmp_path)
    ours, _ = read_wfdb(path)
    theirs = wfdb.rdrecord(str(path))
    np.testing.assert_array_equal(ours.physical(), theirs.p_signal.T.astype(np.float32))


@pytest.mark.parametrize("damage, what", [
    (lambda p: p.with_suffix(".dat").write_bytes(p.with_suffix(".dat").read_bytes()[:-500]), "truncated signal file"),
    (lambda p: p.with_suffix(".dat").write_bytes(p.with_suffix(".dat").read_bytes() + b"\0" * 240), "header/signal length mismatch"),
    (lambda p: p.with_suffix(".dat").unlink(), "missing signal file"),
    (lambda p: p.with_suffix(".hea").write_text(p.with_suffix(".hea").read_text().replace(".dat 16 ", ".dat 311 ")), "unknown format code"),
    (lambda p: p.with_suffix(".hea").write_text("garbage here\n"), "bad header"),
    (lambda p: p.with_suffix(".hea").write_text(p.with_suffix(".hea").read_text().replace("/mV", "/furlong")), "no ECG signal"),
    (lambda p: _flip_a_sample(p), "checksum mismatch"),
    (lambda p: _mark_invalid(p), "invalid samples"),
    (lambda p: p.with_suffix(".hea").write_text("\n".join(p.with_suffix(".hea").read_text().splitlines()[:-3])), "bad header"),
])
def test_bad_records_are_named(tmp_path, damage, what):
    path = _write(tmp_path)
    damage(path)
    with pytest.raises(BadRecord) as info:
        read_wfdb(path)
    assert info.value.what == what
    assert str(tmp_path) in info.value.file


def _flip_a_sample(path):
    data = bytearray(path.with_suffix(".dat").read_bytes())
    data[100] ^= 0x01
    path.with_suffix(".dat").write_bytes(bytes(data))


def _mark_invalid(path):
    data = np.fromfile(path.with_suffix(".dat"), dtype="<i2")
    data[7] = -32768
    data.tofile(path.with_suffix(".dat"))


def test_parse_header_reads_fields_with_wfdbs_grammar():
    header = parse_header("r 2 360 650000 12:30:00 25/12/2001\nr.dat 212 200 11 1024 995 -22131 0 MLII\n"
                          "r.dat 212 200 11 1024 1011 20052 0 V5\n# a comment\n", "r.hea")
    assert (header.n_sig, header.fs, header.sig_len) == (2, 360.0, 650000)
    assert [s.name for s in header.signals] == ["MLII", "V5"]
    assert header.checksums == [-22131, 20052]
    assert header.signals[0].baseline == 1024  # no (baseline): the ADC zero
    assert header.time == "2001-12-25T12:30:00"
    assert header.comments == ["a comment"]
