"""Synthetic angiograms: valid DICOM XA files the project's reader opens, deterministic, and each stenosis drawn at
its segment with its degree (lumen width measured across the centre line), contrast filling over the frames."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid
from scipy.ndimage import grey_closing, map_coordinates

from stence_bench.data.dicom import read_angiography
from stence_bench.data.layouts.dicom_folder import DicomLayout
from stence_bench.synth.angiography import (
    SEGMENT_NAMES,
    SEGMENTS,
    VESSELS,
    VIEWS,
    SegmentPath,
    coronary_tree,
    render_angiogram,
    vessel_max,
    write_angiogram,
)

LESIONS = {"pLAD": 90.0, "mRCA": 70.0}


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def lumen(frame: np.ndarray, seg: SegmentPath, index: int | None = None, step: float = 0.25) -> tuple[float, float]:
    """Lumen width (px darker than 92 % of the local background across the centre line, within 5 px of it) and its
    densitometric area (summed relative darkness, px; about 0 where nothing is filled), on the normal to ``seg`` at
    ``index`` (default its lesion)."""
    index = seg.lesion if index is None else index
    offsets = np.arange(-9.0, 9.0 + step / 2, step)
    line = seg.points[index][:, None] + seg.normal(index)[:, None] * offsets[None]
    values = map_coordinates(frame.astype(np.float64), line, order=1)
    background = np.median(values[np.abs(offsets) >= 6])
    dark = (1 - values / background)[np.abs(offsets) <= 5]
    return float((dark > 0.08).sum() * step), float(dark.sum() * step)


def opacified(frame: np.ndarray) -> np.ndarray:
    """Pixels at least 8 % darker than the local background (a grey closing removes the thin dark vessels)."""
    return frame < 0.92 * grey_closing(frame.astype(np.float64), size=(13, 13))


# ------------------------------------------------------------------------------------------------- DICOM file


def test_file_opens_with_pydicom_and_the_project_reader(tmp_path):
    path = tmp_path / "p1" / "lao.dcm"
    when = datetime(2021, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    write_angiogram(path, LESIONS, patient_id="P0001", seed=7, time=when, frames=6, size=96, frame_time_ms=33.3)

    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == uid.RLELossless
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == uid.XRayAngiographicImageStorage
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.Modality == "XA" and ds.PatientID == "P0001"
    assert (ds.NumberOfFrames, ds.Rows, ds.Columns) == (6, 96, 96)
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("FrameTime") and float(ds.FrameTime) == 33.3
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 10, 9, 0)
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
    assert (ds.StudyDate, ds.StudyTime, ds.AcquisitionDateTime) == ("20210506", "070809", "20210506070809+0200")
    assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}) == 3
    assert ds.pixel_array.shape == (6, 96, 96)

    angio = read_angiography(path)
    assert angio.transfer_syntax == "RLE Lossless"
    assert angio.frames.shape == (6, 96, 96) and angio.frames.dtype == np.uint16
    assert angio.bits_stored == 10 and int(angio.frames.max()) < 1024 and int(angio.frames.min()) >= 0
    assert angio.frame_time_ms == pytest.approx(33.3)
    assert (angio.primary_angle, angio.secondary_angle) == VIEWS["LAO"] == (30.0, 20.0)
    assert angio.patient_id == "P0001" and angio.study_uid == ds.StudyInstanceUID
    assert angio.time == "2021-05-06T07:08:09+02:00"
    # The stored pixels are exactly the rendering with the seed.
    expected = render_angiogram(LESIONS, rng=rng(7), frames=6, size=96)
    np.testing.assert_array_equal(angio.frames, expected)


def test_views_set_the_angles_and_share_the_study(tmp_path):
    lao, rao = tmp_path / "lao.dcm", tmp_path / "rao.dcm"
    write_angiogram(lao, LESIONS, patient_id="P1", seed=3)
    write_angiogram(rao, LESIONS, patient_id="P1", seed=3, view="RAO")
    a, b = read_angiography(lao), read_angiography(rao)
    assert (b.primary_angle, b.secondary_angle) == (-30.0, -20.0)
    assert a.study_uid == b.study_uid
    assert pydicom.dcmread(lao).SeriesInstanceUID != pydicom.dcmread(rao).SeriesInstanceUID
    assert not np.array_equal(a.frames, b.frames)
    assert a.time == "2020-01-01T09:00:00"  # the fixed default
    given = tmp_path / "given.dcm"
    write_angiogram(given, LESIONS, patient_id="P1", seed=3, study_uid="1.2.3.4")
    assert read_angiography(given).study_uid == "1.2.3.4"


def test_the_dicom_layout_lists_the_angiograms(tmp_path):
    for i, view in enumerate(("LAO", "RAO")):
        write_angiogram(tmp_path / f"P{i}" / f"{view}.dcm", {}, patient_id=f"P{i}", seed=i, view=view)
    scan = DicomLayout().scan(tmp_path)
    assert scan.refs == [] and scan.problems == []
    table = scan.tables["angiography"].sort_values("patient_id")
    assert table.patient_id.tolist() == ["P0", "P1"]
    assert table.n_frames.tolist() == [8, 8] and table.frame_time_ms.tolist() == [66.7, 66.7]
    assert table.primary_angle.tolist() == [30.0, -30.0]


def test_same_inputs_same_bytes_other_seed_other_pixels(tmp_path):
    first, second, other = tmp_path / "a.dcm", tmp_path / "b.dcm", tmp_path / "c.dcm"
    write_angiogram(first, LESIONS, patient_id="P9", seed=11)
    write_angiogram(second, LESIONS, patient_id="P9", seed=11)
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size < 8 * 128 * 128 * 2 * 0.7  # RLE does compress
    write_angiogram(other, LESIONS, patient_id="P9", seed=12)
    a, c = read_angiography(first), read_angiography(other)
    assert (a.frames != c.frames).mean() > 0.5
    assert pydicom.dcmread(first).SOPInstanceUID != pydicom.dcmread(other).SOPInstanceUID
    # The geometry varies with the seed too, not just the noise.
    t1, t2 = coronary_tree(rng=rng(11)), coronary_tree(rng=rng(12))
    assert np.abs(t1["pLAD"].points[-1] - t2["pLAD"].points[-1]).max() > 0.5
    assert np.array_equal(render_angiogram(LESIONS, rng=rng(5)), render_angiogram(LESIONS, rng=rng(5)))


# --------------------------------------------------------------------------------------------------- drawing


@pytest.mark.parametrize(("view", "seed"), [("LAO", 0), ("LAO", 1), ("RAO", 2), ("AP", 3)])
@pytest.mark.parametrize(("segment", "untouched"), [("pLAD", "mRCA"), ("mRCA", "pLAD")])
def test_narrowing_at_its_segment_grows_with_its_degree(view, seed, segment, untouched):
    tree = coronary_tree(rng=rng(seed), view=view)
    widths, areas, others = [], [], []
    for degree in (0, 50, 70, 90):
        last = render_angiogram({segment: degree}, rng=rng(seed), view=view)[-1]  # fully filled
        width, area = lumen(last, tree[segment])
        widths.append(width)
        areas.append(area)
        others.append(lumen(last, tree[untouched]))
    assert widths[0] >= 4.0  # a 2.5-3 px radius
    assert widths[0] > widths[1] > widths[2] >= widths[3], widths
    assert widths[1] == pytest.approx(widths[0] / 2, abs=1.5)
    assert widths[3] <= 1.0  # a 90 % lesion is a pinch
    assert areas[0] > areas[1] > areas[2] > areas[3], areas
    assert len(set(others)) == 1 and others[0][0] >= 4.0  # a segment with 0 % keeps its width


def test_the_lesion_changes_only_the_pixels_around_it():
    tree = coronary_tree(rng=rng(4))
    base = render_angiogram({}, rng=rng(4))
    for segment in ("pLAD", "pLCx", "mRCA", "D1"):
        changed = render_angiogram({segment: 90}, rng=rng(4))
        rows, cols = np.nonzero(changed[-1] != base[-1])
        assert len(rows) > 10, segment
        distance = np.hypot(rows - tree[segment].lesion_point[0], cols - tree[segment].lesion_point[1])
        assert distance.max() <= 12, (segment, distance.max())
        assert (changed[-1] > base[-1]).sum() > 0.8 * len(rows)  # narrower lumen: brighter there
    assert np.array_equal(render_angiogram({"mLAD": 0.0}, rng=rng(4)), base)  # 0 % draws nothing


def test_contrast_fills_the_tree_over_the_frames():
    frames = render_angiogram({}, rng=rng(8), frames=8)
    counts = [int(opacified(f).sum()) for f in frames]
    assert counts[0] < 0.5 * counts[-1], counts
    assert all(b >= 0.97 * a for a, b in itertools.pairwise(counts)), counts  # never empties (noise aside)
    tree = coronary_tree(rng=rng(8))
    # Frame 0 shows the proximal left main but not the distal LAD; the last frame shows both.
    assert lumen(frames[0], tree["LM"], 0)[1] > 0.5 and lumen(frames[0], tree["dLAD"])[1] < 0.1
    assert lumen(frames[-1], tree["dLAD"])[1] > 0.3


def test_occlusion_leaves_the_vessel_downstream_unfilled_and_a_tight_lesion_delays_it():
    tree = coronary_tree(rng=rng(6))
    open_, tight, occluded = (render_angiogram({"mLAD": s}, rng=rng(6)) for s in (0, 95, 100))
    d_lad = tree["dLAD"]
    assert lumen(open_[-1], d_lad)[1] > 0.3 and lumen(tight[-1], d_lad)[1] > 0.3
    assert lumen(occluded[-1], d_lad)[1] < 0.1
    assert lumen(occluded[-1], tree["pLAD"])[1] > 0.5  # upstream is filled
    # The first frame in which the distal LAD is half as dark as when filled comes later behind the tight lesion.
    first = [next(k for k, frame in enumerate(run) if lumen(frame, d_lad)[1] > 0.5 * lumen(run[-1], d_lad)[1])
             for run in (open_, tight)]
    assert first[0] < first[1] < len(open_) - 1, first


def test_shape_dtype_and_bits():
    # speed is measured in benchmarks/synth_speed.py, never asserted in a test (shared, noisy machines)
    img = render_angiogram(LESIONS, rng=rng(0), frames=5, size=64, view="RAO")
    assert img.shape == (5, 64, 64) and img.dtype == np.uint16 and int(img.max()) < 1024


# ---------------------------------------------------------------------------------------- segments and input


def test_segments_and_vessel_max():
    assert len(SEGMENT_NAMES) == len(set(SEGMENT_NAMES)) == 12 and SEGMENT_NAMES[0] == "LM"
    assert {vessel for _, vessel in SEGMENTS} == {"LM", *VESSELS}
    assert vessel_max({}) == {"LAD": 0.0, "LCx": 0.0, "RCA": 0.0}
    assert vessel_max({"mLAD": 40, "D1": 75, "OM1": 30, "pRCA": 50, "PDA": 90}) == {"LAD": 75, "LCx": 30, "RCA": 90}
    # The left main counts for the LAD and the LCx, never for the RCA.
    assert vessel_max({"LM": 60, "pLAD": 50, "dLCx": 80}) == {"LAD": 60, "LCx": 80, "RCA": 0}
    tree = coronary_tree(rng=rng(0))
    assert list(tree) == list(SEGMENT_NAMES)
    for name, seg in tree.items():  # children start where their parent ends
        if seg.parent is not None:
            np.testing.assert_allclose(seg.points[0], tree[seg.parent].points[-1])
            assert seg.start_arc == pytest.approx(tree[seg.parent].start_arc + tree[seg.parent].arc[-1])
        assert np.all((seg.points > -1) & (seg.points < 128)), name  # inside the image


@pytest.mark.parametrize(("stenosis", "named"), [
    ({"pLAD": 50, "LADx": 30}, "LADx"), ({"mRCA": 120}, "mRCA"), ({"OM1": -5}, "OM1"), ({"D1": float("nan")}, "D1"),
    ({"pLCx": "severe"}, "pLCx"), ({"LM": True}, "LM"),
])
def test_bad_stenosis_is_a_value_error_naming_it(tmp_path, stenosis, named):
    for call in (lambda: vessel_max(stenosis), lambda: render_angiogram(stenosis, rng=rng(0)),
                 lambda: write_angiogram(tmp_path / "x.dcm", stenosis, patient_id="P", seed=0)):
        with pytest.raises(ValueError, match=named):
            call()
    assert not (tmp_path / "x.dcm").exists()


def test_bad_view_size_and_patient_id(tmp_path):
    with pytest.raises(TypeError, match="mapping"):
        render_angiogram([("pLAD", 50)], rng=rng(0))
    with pytest.raises(ValueError, match="LAT"):
        render_angiogram({}, rng=rng(0), view="LAT")
    with pytest.raises(ValueError, match="size"):
        render_angiogram({}, rng=rng(0), size=8)
    with pytest.raises(ValueError, match="frames"):
        render_angiogram({}, rng=rng(0), frames=0)
    with pytest.raises(ValueError, match="patient_id"):
        write_angiogram(Path(tmp_path) / "x.dcm", {}, patient_id="", seed=0)
