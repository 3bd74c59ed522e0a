"""Synthetic coronary angiograms: a schematic coronary tree with each stenosis drawn at its segment, as DICOM XA.

What is drawn. The heart is an ellipsoid (long axis from the base, up and right, to the apex, down, left and
anterior); the arteries run on its surface in their grooves: the LAD and the PDA down the interventricular grooves,
the LCx and the RCA round the atrioventricular groove, D1 and OM1 down the anterolateral and lateral walls, and the
left main from the aortic root to the LAD/LCx bifurcation. Each of the twelve :data:`SEGMENTS` is a smooth centre
line (a Catmull-Rom spline through a few control points on the surface) seen in an orthographic projection along
the C-arm's viewing direction (:data:`VIEWS`: primary angle LAO +/RAO -, secondary angle cranial +/caudal -), with a
lumen radius tapering from ostium to periphery (about 3 px in the left main, 1 px at the distal ends, at 128 px).
Both the left and the right system are drawn in every run, so every segment is visible in every file (a real
injection fills one of them). Pixels are X-ray intensities: a smooth bright background (level, gradient, image
intensifier vignetting, a darker diaphragm dome at the bottom) attenuated by Beer-Lambert, ``exp(-mu * chord)``,
where ``chord`` is the path length through the contrast-filled cylinder, so vessels are darker than the background
and larger vessels darker than smaller ones; then a small blur (focal spot, detector) and quantum noise (standard
deviation ``0.5 * sqrt(intensity)``), rounded to 10 bits.

Stenoses: a segment with stenosis ``s`` % has its lumen radius reduced by ``s`` % over a short lesion (about 10 px
long at 128 px, the central 40 % at full depth), so 90 % is a visible pinch and 0 % is nothing. The lesion is centred
in the middle half of the segment (recorded in :class:`SegmentPath`): at a random place, moved to the nearest point
whose lumen is 5 px clear of every other vessel in the projection when there is one. As in real angiography, a view
can still foreshorten a segment or overlap it with another (the left main in LAO, the proximal LCx and LAD in RAO
caudal most often); AP shows the most segments clear, and a patient can have several views written. Contrast fills
the tree from the two ostia over the frames (a front moving along the arc length: about a fifth of the longest path
in the first of 8 frames, nearly all of it by the fifth); a lesion over 70 % delays the filling of everything
downstream of it (slow, TIMI 2-like flow) and a total occlusion (100 %) leaves it unfilled.

The projected tree is scaled to span 78 % of the image (times the patient's heart size) and centred (plus a shift).

Per patient, ``rng`` varies the heart's orientation, size and position, the control points, the vessel calibre, the
lesion positions, a gentle tortuosity, the injection timing of each system and the background.

Not drawn: cardiac and respiratory motion, the catheter, side branches other than D1 and OM1, collaterals,
dominance variants, eccentric or calcified plaque, overlapping structures other than the diaphragm (spine, ribs,
sternal wires), scatter and veiling glare, image-intensifier distortion, contrast wash-out. It is a schematic, not
a realistic angiogram: enough for a CNN to see a narrowing at a known place and degree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_encoder
from pydicom.tag import Tag
from pydicom.uid import RLELossless, XRayAngiographicImageStorage, generate_uid
from scipy.ndimage import gaussian_filter

from .physiology import SEGMENTS, VESSELS  # one list of segments for the latents and the images

__all__ = ["BITS_STORED", "DEFAULT_TIME", "SEGMENTS", "SEGMENT_NAMES", "VESSELS", "VIEWS", "SegmentPath",
           "coronary_tree", "render_angiogram", "vessel_max", "write_angiogram"]

#: Coronary segments (a simplified AHA/SYNTAX scheme) and their vessel, proximal to distal within each vessel.
SEGMENT_NAMES: tuple[str, ...] = tuple(name for name, _ in SEGMENTS)
#: View -> (Positioner Primary Angle, LAO + / RAO -; Positioner Secondary Angle, cranial + / caudal -), degrees.
VIEWS: dict[str, tuple[float, float]] = {"LAO": (30.0, 20.0), "RAO": (-30.0, -20.0), "AP": (0.0, 0.0)}
BITS_STORED = 10
#: Acquisition time written when none is given.
DEFAULT_TIME = datetime(2020, 1, 1, 9, 0, 0)

# Geometry at 128 px: parent (the segment starts at its end; None: an ostium), control points on the heart surface
# as (height along the long axis, -1 base .. 1 apex; azimuth round it, radians, 0 anterior, + towards the left;
# radial factor, 1 on the surface), and the lumen radius in pixels at the start and the end.
_TREE: dict[str, tuple[str | None, tuple[tuple[float, float, float], ...], float, float]] = {
    "LM": (None, ((-0.86, 0.15, 0.45), (-0.74, 0.45, 0.80), (-0.58, 0.70, 1.0)), 3.2, 3.0),
    "pLAD": ("LM", ((-0.58, 0.70, 1.0), (-0.35, 0.45, 1.0), (-0.08, 0.32, 1.0)), 2.8, 2.4),
    "mLAD": ("pLAD", ((-0.08, 0.32, 1.0), (0.18, 0.27, 1.0), (0.42, 0.27, 1.0)), 2.3, 1.8),
    "dLAD": ("mLAD", ((0.42, 0.27, 1.0), (0.72, 0.30, 1.0), (0.95, 0.55, 1.0)), 1.7, 1.0),
    "D1": ("pLAD", ((-0.08, 0.32, 1.0), (0.12, 0.62, 1.0), (0.40, 0.85, 1.0)), 1.6, 1.0),
    "pLCx": ("LM", ((-0.58, 0.70, 1.0), (-0.58, 1.20, 1.0), (-0.55, 1.65, 1.0)), 2.6, 2.2),
    "dLCx": ("pLCx", ((-0.55, 1.65, 1.0), (-0.52, 2.15, 1.0), (-0.48, 2.55, 1.0)), 1.7, 1.1),
    "OM1": ("pLCx", ((-0.55, 1.65, 1.0), (-0.25, 2.00, 1.0), (0.15, 2.15, 1.0)), 1.7, 1.0),
    "pRCA": (None, ((-0.86, -0.30, 0.45), (-0.70, -0.70, 0.85), (-0.56, -1.20, 1.0)), 3.0, 2.8),
    "mRCA": ("pRCA", ((-0.56, -1.20, 1.0), (-0.53, -1.75, 1.0), (-0.52, -2.30, 1.0)), 2.6, 2.4),
    "dRCA": ("mRCA", ((-0.52, -2.30, 1.0), (-0.50, -2.65, 1.0), (-0.47, -2.95, 1.0)), 2.2, 2.0),
    "PDA": ("dRCA", ((-0.47, -2.95, 1.0), (-0.10, -3.00, 1.0), (0.40, -3.05, 1.0)), 1.5, 1.0),
}
_VESSEL_OF = dict(SEGMENTS)
_SYSTEM = {name: ("right" if vessel == "RCA" else "left") for name, vessel in SEGMENTS}
_REF_SIZE = 128
#: Base-to-apex axis of the heart (patient axes: x left, y anterior, z cranial), before the per-patient jitter.
_LONG_AXIS = (0.62, 0.42, -0.66)
_MU = 0.12  # attenuation per pixel of chord at 128 px: a 6 px chord (a 3 px radius) lets through ~49 %
_LESION_HALF = 5.0  # lesion half-length at 128 px; full depth over its central 40 %
_SPACING = 0.75  # centre-line sample spacing, pixels
_FRONT = 1.8  # the contrast front reaches this normalised arc length (1 = the system's longest path) at the last frame
_SOFT = 0.1  # width of the contrast front, normalised arc length
_MAX_DELAY = 0.5  # cap on the summed filling delays of a path (stays below _FRONT - 1 - _SOFT - injection offset)


@dataclass(frozen=True)
class SegmentPath:
    """One segment's centre line in pixels: ``points`` ``[n, 2]`` (row, col), proximal first, about 0.75 px apart;
    ``radius`` ``[n]`` the lumen radius without stenosis; ``arc`` ``[n]`` the arc length from the segment's start;
    ``start_arc`` the arc length from the ostium to its start; ``lesion`` the index of the point where a stenosis of
    this segment is centred."""

    name: str
    vessel: str
    parent: str | None
    points: np.ndarray
    radius: np.ndarray
    arc: np.ndarray
    start_arc: float
    lesion: int

    @property
    def lesion_point(self) -> np.ndarray:
        """(row, col) of the lesion centre."""
        return self.points[self.lesion]

    def normal(self, index: int) -> np.ndarray:
        """Unit normal (row, col) of the centre line at point ``index``."""
        a, b = self.points[max(index - 2, 0)], self.points[min(index + 2, len(self.points) - 1)]
        t = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
        return np.array([-t[1], t[0]])


def vessel_max(stenosis: Mapping[str, float]) -> dict[str, float]:
    """Worst stenosis (%) per vessel of :data:`VESSELS`; the left main counts for both the LAD and the LCx."""
    values = _check_stenosis(stenosis)
    out = {vessel: 0.0 for vessel in VESSELS}
    for name, value in values.items():
        vessel = _VESSEL_OF[name]
        for v in (("LAD", "LCx") if vessel == "LM" else (vessel,)):
            out[v] = max(out[v], value)
    return out


def coronary_tree(*, rng: np.random.Generator, view: str = "LAO", size: int = 128) -> dict[str, SegmentPath]:
    """The patient's coronary tree in pixels, for :data:`VIEWS` ``view`` on a ``size`` x ``size`` image.

    :func:`render_angiogram` draws it first from its ``rng``, so ``coronary_tree(rng=np.random.default_rng(seed))``
    is the geometry of ``render_angiogram(..., rng=np.random.default_rng(seed))`` with the same view and size.
    """
    primary, secondary = _view_angles(view)
    _check_size(size, 1)
    scale_px = size / _REF_SIZE
    # Every draw happens whatever the inputs, in a fixed order, so the geometry depends on the rng alone.
    axis_jitter = rng.normal(0.0, 0.06, 3)
    heart_scale = rng.uniform(0.93, 1.07)
    shift = rng.uniform(-0.03, 0.03, 2) * size
    spin = rng.normal(0.0, 0.08)
    calibre = rng.uniform(0.9, 1.1)
    n_seg = len(SEGMENTS)
    ctrl_jitter = rng.normal(0.0, 1.0, (n_seg, 3, 2)) * np.array([0.025, 0.06])
    lesion_at = rng.uniform(0.35, 0.65, n_seg)
    wiggle = rng.uniform(0.0, 0.8, n_seg) * scale_px, rng.uniform(1.0, 2.5, n_seg), rng.uniform(0, 2 * np.pi, n_seg)

    # Heart frame (patient axes x left, y anterior, z cranial): long axis u from base to apex, e1 anterior, e2 left.
    u = np.array(_LONG_AXIS) + axis_jitter
    u /= np.linalg.norm(u)
    e1 = np.array([0.0, 1.0, 0.0]) - u[1] * u
    e1 /= np.linalg.norm(e1)
    e2 = np.array([1.0, 0.0, 0.0]) - u[0] * u - e1[0] * e1
    e2 /= np.linalg.norm(e2)
    # Orthographic projection on the detector: v towards it, h the image's column axis, w its upward axis.
    a, b = math.radians(primary), math.radians(secondary)
    v = np.array([math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), math.sin(b)])
    h = np.array([math.cos(a), -math.sin(a), 0.0])
    w = np.cross(h, v)

    ends: dict[str, np.ndarray] = {}
    projected: dict[str, np.ndarray] = {}  # (row, col) in heart units
    for i, (name, _) in enumerate(SEGMENTS):
        parent, control, _, _ = _TREE[name]
        ctrl = np.array(control, dtype=np.float64)
        ctrl[:, :2] += ctrl_jitter[i]
        ctrl[:, 1] += spin
        if parent is not None:
            ctrl[0] = ends[parent]
        ends[name] = ctrl[-1]
        hh, phi, k = _catmull_rom(ctrl, 24).T
        radial = k * 0.78 * np.sqrt(np.clip(1 - hh**2, 0.03, None))
        p3 = (hh[:, None] * u + radial[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2))
        projected[name] = np.stack([-(p3 @ w), p3 @ h], axis=1)
    # The tree's bounding box, centred, spans 78 % of the image (times the heart's size), then shifted.
    everything = np.vstack(list(projected.values()))
    low, high = everything.min(axis=0), everything.max(axis=0)
    px = 0.78 * size * heart_scale / float((high - low).max())
    centre = size / 2 + shift - px * (low + high) / 2

    paths: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # points, arc, radius
    for i, (name, _) in enumerate(SEGMENTS):
        parent, _, r0, r1 = _TREE[name]
        points, arc = _resample(centre + px * projected[name], _SPACING)
        if parent is not None:  # start exactly where the parent ends
            points[0] = paths[parent][0][-1]
        length = max(float(arc[-1]), 1e-6)
        amp, freq, phase = wiggle[0][i], wiggle[1][i], wiggle[2][i]
        offset = amp * np.sin(np.pi * arc / length) * np.sin(2 * np.pi * freq * arc / length + phase)
        if len(points) > 2:
            normals = np.gradient(points, axis=0)[:, ::-1] * np.array([-1.0, 1.0])
            normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
            points = points + offset[:, None] * normals
        paths[name] = points, arc, calibre * scale_px * (r0 + (r1 - r0) * arc / length)

    tree: dict[str, SegmentPath] = {}
    for i, (name, vessel) in enumerate(SEGMENTS):
        parent = _TREE[name][0]
        points, arc, radius = paths[name]
        start_arc = 0.0 if parent is None else tree[parent].start_arc + float(tree[parent].arc[-1])
        lesion = _place_lesion(name, paths, lesion_at[i], 5.0 * scale_px)
        tree[name] = SegmentPath(name=name, vessel=vessel, parent=parent, points=points, radius=radius, arc=arc,
                                 start_arc=start_arc, lesion=lesion)
    return tree


def render_angiogram(stenosis: Mapping[str, float], *, rng: np.random.Generator, frames: int = 8, size: int = 128,
                     view: str = "LAO") -> np.ndarray:
    """A contrast run of the coronary tree with ``stenosis`` (segment -> %; absent segments are 0): uint16
    ``[frames, size, size]``, 10 bits stored, vessels dark on a bright background, filling over the frames.

    ``rng`` is drawn from the same way whatever ``stenosis`` holds: with one seed, two stenosis maps give images that
    differ only where the lesions are (and, in early frames, downstream of a tight one)."""
    values = _check_stenosis(stenosis)
    _check_size(size, frames)
    tree = coronary_tree(rng=rng, view=view, size=size)
    injection = rng.uniform(0.0, 0.08, 2)  # per system (left, right): when its contrast arrives
    background = _background(rng, size)
    noise = rng.standard_normal((frames, size, size), dtype=np.float32)

    scale_px = size / _REF_SIZE
    chord = np.zeros((size, size), np.float32)
    arrival = np.full((size, size), np.inf, np.float32)
    longest = {system: max(s.start_arc + float(s.arc[-1]) for s in tree.values() if _SYSTEM[s.name] == system)
               for system in ("left", "right")}
    delay_at_end: dict[str, float] = {}
    for name, seg in tree.items():
        s = values.get(name, 0.0)
        half = min(_LESION_HALF * scale_px, 0.45 * float(seg.arc[-1]))  # short in a foreshortened segment
        x = np.abs(seg.arc - seg.arc[seg.lesion]) / max(half, 1e-6)
        depth = np.where(x < 0.4, 1.0, np.where(x < 1.0, 0.5 * (1 + np.cos(np.pi * (x - 0.4) / 0.6)), 0.0))
        radius = seg.radius * (1 - s / 100 * depth)
        system = _SYSTEM[name]
        inherited = 0.0 if seg.parent is None else delay_at_end[seg.parent]
        past = seg.arc > seg.arc[seg.lesion]
        delay = np.where(past, inherited + _flow_delay(s), inherited)
        delay_at_end[name] = float(delay[-1])
        capped = np.where(np.isinf(delay), np.inf, np.minimum(delay, _MAX_DELAY))  # an occlusion stays one
        point_arrival = (seg.start_arc + seg.arc) / longest[system] + capped
        point_arrival += injection[0 if system == "left" else 1]
        _rasterise(seg.points, radius, point_arrival, chord, arrival)

    front = _FRONT * np.arange(1, frames + 1, dtype=np.float32) / frames
    fill = np.clip((front[:, None, None] - arrival[None]) / _SOFT, 0.0, 1.0)
    absorbance = gaussian_filter((_MU / scale_px) * chord[None] * fill, sigma=(0, 0.6 * scale_px, 0.6 * scale_px))
    intensity = background[None] * np.exp(-absorbance)
    intensity += 0.5 * np.sqrt(intensity) * noise
    return np.clip(np.rint(intensity), 0, 2**BITS_STORED - 1).astype(np.uint16)


def write_angiogram(path: str | Path, stenosis: Mapping[str, float], *, patient_id: str, study_uid: str | None = None,
                    time: datetime | None = None, seed: int, view: str = "LAO", frames: int = 8, size: int = 128,
                    frame_time_ms: float = 66.7) -> None:
    """Write :func:`render_angiogram` (``rng = np.random.default_rng(seed)``) as a DICOM X-ray angiography file
    (multi-frame, RLE Lossless, by GDCM when installed). Same inputs, same bytes: the UIDs are hashes of the inputs
    (the study's of ``patient_id`` and ``seed`` alone, so two views of a patient with one seed share it) and the
    dates come from ``time`` (default :data:`DEFAULT_TIME`)."""
    if not isinstance(patient_id, str) or not patient_id or len(patient_id) > 64 or "\\" in patient_id:
        raise ValueError(f"patient_id must be 1 to 64 characters without a backslash, not {patient_id!r}")
    if not (isinstance(frame_time_ms, (int, float)) and math.isfinite(frame_time_ms) and frame_time_ms > 0):
        raise ValueError(f"frame_time_ms must be a positive number, not {frame_time_ms!r}")
    values = _check_stenosis(stenosis)
    primary, secondary = _view_angles(view)
    pixels = render_angiogram(values, rng=np.random.default_rng(seed), frames=frames, size=size, view=view)
    when = time or DEFAULT_TIME

    entropy = ["stence-bench", "synth-angiography", patient_id, str(seed)]
    study = study_uid or generate_uid(entropy_srcs=[*entropy, "study"])
    series = generate_uid(entropy_srcs=[*entropy, study, view, "series"])
    instance = generate_uid(entropy_srcs=[*entropy, study, view, str(frames), str(size), repr(frame_time_ms),
                                          repr(sorted(values.items())), "instance"])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = instance
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.SOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = instance
    date, clock = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = clock
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S") + (when.strftime("%z") if when.tzinfo else "")
    if when.tzinfo is not None:
        ds.TimezoneOffsetFromUTC = when.strftime("%z")
    ds.AccessionNumber = ""
    ds.Modality = "XA"
    ds.Manufacturer = "stence-bench"
    ds.ManufacturerModelName = "synthetic angiography"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Coronary angiography (synthetic)"
    ds.SeriesDescription = f"{view} view ({_angle_text(primary, 'LAO', 'RAO')}, {_angle_text(secondary, 'CRA', 'CAU')})"
    ds.PatientName = ""
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.KVP = "80"
    ds.RadiationSetting = "GR"
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle = _ds(primary)
    ds.PositionerSecondaryAngle = _ds(secondary)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.FrameTime = _ds(frame_time_ms)
    ds.CineRate = max(1, round(1000 / frame_time_ms))
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.LossyImageCompression = "00"
    # GDCM (the extra dicom) encodes RLE 10x faster than pydicom, and the two write different (equally valid) bytes:
    # pinning the encoder keeps "same inputs, same bytes" whichever pydicom would pick, in one environment.
    plugin = "gdcm" if "gdcm" in get_encoder(RLELossless).available_plugins else "pydicom"
    ds.compress(RLELossless, pixels, encoding_plugin=plugin, generate_instance_uid=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


# ------------------------------------------------------------------------------------------------------ helpers


def _check_stenosis(stenosis: Mapping[str, float]) -> dict[str, float]:
    """``stenosis`` as ``{segment: float %}``; ValueError naming an unknown segment or a value outside 0-100."""
    if not isinstance(stenosis, Mapping):
        raise TypeError(f"stenosis must be a mapping of segment -> %, not {type(stenosis).__name__}")
    out: dict[str, float] = {}
    for name, value in stenosis.items():
        if name not in _VESSEL_OF:
            raise ValueError(f"unknown coronary segment {name!r}; known: {', '.join(SEGMENT_NAMES)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, (bool, str)):
            raise ValueError(f"stenosis of {name} is {value!r}, not a number")
        if not 0.0 <= number <= 100.0:  # NaN fails the range too
            raise ValueError(f"stenosis of {name} is {value!r} %, outside 0-100")
        out[name] = number
    return out


def _view_angles(view: str) -> tuple[float, float]:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")
    return VIEWS[view]


def _check_size(size: int, frames: int) -> None:
    for label, value, low in (("size", size, 32), ("frames", frames, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, not {value!r}")


def _place_lesion(name: str, paths: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], preferred: float,
                  gap: float) -> int:
    """Index of the lesion centre on segment ``name``: the point nearest the ``preferred`` fraction of its length,
    within its middle half, whose lumen is at least ``gap`` px from any other segment's lumen in the projection
    (an angiographer picks the view that shows the lesion free); the clearest point when none is."""
    points, arc, radius = paths[name]
    length = float(arc[-1])
    candidates = np.flatnonzero((arc >= 0.25 * length) & (arc <= 0.75 * length))
    if len(candidates) == 0:
        return int(np.argmin(np.abs(arc - preferred * length)))
    others = [p for other, p in paths.items() if other != name]
    other_points = np.vstack([p[0] for p in others])
    other_radius = np.concatenate([p[2] for p in others])
    dist = np.hypot(*(points[candidates, None, :] - other_points[None]).transpose(2, 0, 1))  # [c, n]
    clearance = (dist - other_radius[None]).min(axis=1) - radius[candidates]
    off = np.abs(arc[candidates] - preferred * length)
    clear = np.flatnonzero(clearance >= gap)
    return int(candidates[clear[np.argmin(off[clear])]] if len(clear) else candidates[np.argmax(clearance)])


def _flow_delay(s: float) -> float:
    """Filling delay downstream of a lesion of ``s`` %: none up to 70 %, rising to 0.4 at 99 %; inf when occluded."""
    if s >= 100.0:
        return math.inf
    return 0.4 * max(0.0, (s - 70.0) / 30.0) ** 1.5


def _catmull_rom(ctrl: np.ndarray, per_span: int) -> np.ndarray:
    """A uniform Catmull-Rom spline through the rows of ``ctrl``, ``per_span`` samples a span."""
    padded = np.vstack([2 * ctrl[0] - ctrl[1], ctrl, 2 * ctrl[-1] - ctrl[-2]])
    t = np.linspace(0.0, 1.0, per_span, endpoint=False)[:, None]
    spans = []
    for i in range(len(ctrl) - 1):
        p0, p1, p2, p3 = padded[i: i + 4]
        spans.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                            + (3 * p1 - p0 - 3 * p2 + p3) * t**3))
    return np.vstack([*spans, ctrl[-1:]])


def _resample(points: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """``points`` resampled about ``spacing`` apart along their arc length; the new points and their arc lengths."""
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    n = max(math.ceil(arc[-1] / spacing) + 1, 2)
    at = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(at, arc, points[:, 0]), np.interp(at, arc, points[:, 1])], axis=1), at


def _rasterise(points: np.ndarray, radius: np.ndarray, point_arrival: np.ndarray, chord: np.ndarray,
               arrival: np.ndarray, chunk: int = 12) -> None:
    """Draw one segment into ``chord`` (path length through the lumen at each pixel, the larger where two overlap)
    and ``arrival`` (when the contrast front reaches the pixel), from each pixel's distance to the polyline.

    The polyline is taken ``chunk`` pieces at a time, each over its own bounding box: far fewer pixel-piece pairs.
    """
    size = chord.shape[0]
    for start in range(0, len(points) - 1, chunk):
        stop = min(start + chunk, len(points) - 1)
        pts = points[start: stop + 1]
        rad = radius[start: stop + 1]
        reach = float(rad.max()) + 1.0
        r0, c0 = np.maximum(np.floor(pts.min(axis=0) - reach).astype(int), 0)
        r1, c1 = np.minimum(np.ceil(pts.max(axis=0) + reach).astype(int) + 1, size)
        if r0 >= r1 or c0 >= c1:
            continue
        rows = np.arange(r0, r1, dtype=np.float32)[:, None, None]  # [h, 1, 1] against [k] pieces
        cols = np.arange(c0, c1, dtype=np.float32)[None, :, None]
        ar, ac = pts[:-1, 0].astype(np.float32), pts[:-1, 1].astype(np.float32)
        br, bc = np.diff(pts[:, 0]).astype(np.float32), np.diff(pts[:, 1]).astype(np.float32)
        pr, pc = rows - ar, cols - ac  # [h, 1, k], [1, w, k]
        t = np.clip((pr * br + pc * bc) / np.maximum(br * br + bc * bc, 1e-9), 0.0, 1.0)  # [h, w, k]
        d2 = (pr - t * br) ** 2 + (pc - t * bc) ** 2
        j = np.argmin(d2, axis=2)[..., None]
        d2_min, tj = np.take_along_axis(d2, j, 2)[..., 0], np.take_along_axis(t, j, 2)[..., 0]
        j = j[..., 0]
        r = rad[j] + (rad[j + 1] - rad[j]) * tj
        c = 2.0 * np.sqrt(np.maximum(r * r - d2_min, 0.0))
        when = np.where(tj < 0.5, point_arrival[start + j], point_arrival[start + j + 1])
        block_c, block_a = chord[r0:r1, c0:c1], arrival[r0:r1, c0:c1]  # views: written in place
        take = c > block_c
        block_c[take] = c[take]
        block_a[take] = when[take]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unattenuated intensity: level, a gentle gradient, vignetting, and a darker diaphragm dome at the bottom."""
    level = rng.uniform(720.0, 820.0)
    tilt = rng.uniform(-60.0, 60.0, 2)
    dome_at, dome_curve, dome_dark = rng.uniform(0.78, 0.92), rng.uniform(0.04, 0.12), rng.uniform(0.15, 0.3)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    image = level + tilt[0] * y + tilt[1] * x
    image *= 1.0 - 0.25 * (x * x + y * y)
    edge = dome_at - 0.5 + dome_curve * (2 * x) ** 2
    image *= 1.0 - dome_dark / (1.0 + np.exp(-(y - edge) * size / 3.0))
    return image.astype(np.float32)


def _ds(value: float) -> str:
    """A Decimal String: the shortest text of ``value`` (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8e}"


def _angle_text(angle: float, positive: str, negative: str) -> str:
    return f"{positive if angle >= 0 else negative} {abs(angle):g}"
