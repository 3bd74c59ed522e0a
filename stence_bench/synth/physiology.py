"""Latent patient physiology, and how it shapes each ECG.

One latent, ``risk``, is shared by the clinical targets: it raises age-adjusted blood pressure, cholesterol,
smoking and diabetes, coronary disease (per-segment stenosis), prior infarction, which lowers LVEF, which raises
filling pressure (mPCWP); diabetes and age raise potassium. So the tasks share structure a pretrained encoder can
learn, and latents stay fixed across a patient's ECGs, except potassium and heart rate, which change per ECG.

Each latent acts on the ECG through physiology, never through a shortcut (no label is written into a lead):

- coronary stenosis: ischaemic ST depression and T-wave inversion along the vessel's territory (LAD anterior, RCA
  inferior, LCx lateral-posterior), growing with the vessel's maximal stenosis above 40 %;
- LVEF: lower QRS voltage, wider QRS and faster rate as it falls; left bundle branch block far more likely below
  35 %;
- potassium: taller, narrower T and flatter P as it rises, a wider QRS above 6 mmol/L; flat T, a U wave and a
  longer QT below 3.8;
- mPCWP: a longer P wave and a deeper terminal negative P in V1 (left-atrial load);
- PTB-XL-like findings (prior MI with Q waves and T inversion in the territory, LVH with strain, bundle branch and
  fascicular blocks, first-degree AV block) with age and sex effects on voltage, PR and QT.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .ecg import COMPONENTS, Beats, C, Noise, Rhythm

#: Coronary segments (simplified AHA/SYNTAX) and their vessel; LM feeds both LAD and LCx.
SEGMENTS: tuple[tuple[str, str], ...] = (
    ("LM", "LM"), ("pLAD", "LAD"), ("mLAD", "LAD"), ("dLAD", "LAD"), ("D1", "LAD"), ("pLCx", "LCx"),
    ("dLCx", "LCx"), ("OM1", "LCx"), ("pRCA", "RCA"), ("mRCA", "RCA"), ("dRCA", "RCA"), ("PDA", "RCA"),
)
VESSELS: tuple[str, ...] = ("LAD", "LCx", "RCA")
#: Unit vectors of each vessel's territory in body axes (x left, y inferior, z anterior).
TERRITORY = {
    "LAD": np.array([0.25, -0.05, 1.0]),
    "RCA": np.array([0.0, 1.0, -0.15]),
    "LCx": np.array([1.0, 0.15, -0.55]),
}
TERRITORY = {k: v / np.linalg.norm(v) for k, v in TERRITORY.items()}
_SEGMENT_PRONENESS = {"LM": -1.2, "pLAD": 0.4, "mLAD": 0.3, "dLAD": -0.3, "D1": -0.4, "pLCx": 0.0, "dLCx": -0.3,
                      "OM1": -0.2, "pRCA": 0.3, "mRCA": 0.2, "dRCA": -0.1, "PDA": -0.5}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def sample_patients(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient latents (one row per patient) and their per-segment stenosis (one row per patient and segment)."""
    risk = rng.standard_normal(n)
    female = rng.random(n) < 0.42
    age = np.clip(60 + 6 * risk + rng.normal(0, 11, n), 22, 95)
    smoking = rng.random(n) < _sigmoid(-1.0 + 0.7 * risk - 0.4 * female)
    diabetes = rng.random(n) < _sigmoid(-2.0 + 0.8 * risk + 0.03 * (age - 60))
    sbp = 126 + 9 * risk + 0.45 * (age - 60) + rng.normal(0, 12, n)
    dbp = 0.45 * sbp + 22 + rng.normal(0, 7, n)
    cholesterol = 5.1 + 0.5 * risk - 0.2 * female + rng.normal(0, 0.8, n)
    bmi = 27 + 1.6 * risk + rng.normal(0, 4, n)
    # coronary disease burden, then lesions per segment
    burden = 0.9 * risk + 0.045 * (age - 60) + 0.5 * smoking + 0.6 * diabetes - 0.35 * female + rng.normal(0, 0.7, n)
    rows = []
    vessel_max = {v: np.zeros(n) for v in VESSELS}
    for segment, vessel in SEGMENTS:
        has_lesion = rng.random(n) < _sigmoid(-1.6 + 1.2 * burden + _SEGMENT_PRONENESS[segment])
        severity = np.where(has_lesion, np.clip(20 + 80 * rng.beta(1.4 + 0.6 * np.clip(burden, 0, 3), 2.2, n), 0, 100), 0.0)
        severity = np.round(severity / 5) * 5  # angiographers read in steps of 5 %
        rows.append(pd.DataFrame({"patient": np.arange(n), "segment": segment, "vessel": vessel,
                                  "stenosis_pct": severity}))
        for v in (("LAD", "LCx") if vessel == "LM" else (vessel,)):
            vessel_max[v] = np.maximum(vessel_max[v], severity)
    stenosis = pd.concat(rows, ignore_index=True)
    worst = np.stack([vessel_max[v] for v in VESSELS], axis=1)
    # prior infarction, most likely in the territory of the worst vessel
    mi = rng.random(n) < _sigmoid(-5.0 + 0.04 * worst.max(axis=1) + 0.4 * burden)
    mi_vessel = np.array(VESSELS)[np.argmax(worst + rng.normal(0, 8, worst.shape), axis=1)]
    lvef = np.clip(60 + rng.normal(0, 5.5, n) - mi * rng.uniform(8, 30, n) - 4 * np.clip(burden, 0, None)
                   - (rng.random(n) < 0.04) * rng.uniform(15, 35, n), 12, 78)
    pcwp = np.clip(9 + 0.42 * np.clip(58 - lvef, 0, None) + 1.5 * np.clip(risk, 0, None) + rng.normal(0, 3.5, n), 3, 42)
    k_base = 4.25 + 0.25 * diabetes + 0.012 * (age - 60) + 0.25 * (lvef < 35) + rng.normal(0, 0.28, n)
    lbbb = rng.random(n) < _sigmoid(-4.6 + 0.09 * np.clip(50 - lvef, 0, None) + 0.02 * (age - 60))
    rbbb = ~lbbb & (rng.random(n) < _sigmoid(-3.6 + 0.03 * (age - 60)))
    lafb = ~lbbb & (rng.random(n) < 0.05)
    lvh = rng.random(n) < _sigmoid(-3.4 + 0.045 * (sbp - 130) + 0.6 * (bmi > 30))
    avb1 = rng.random(n) < _sigmoid(-3.6 + 0.04 * (age - 60))
    patients = pd.DataFrame({
        "patient": np.arange(n), "risk": risk, "female": female, "age": age, "smoking": smoking,
        "diabetes": diabetes, "sbp": sbp, "dbp": dbp, "cholesterol": cholesterol, "bmi": bmi, "burden": burden,
        **{f"max_{v}": vessel_max[v] for v in VESSELS}, "mi": mi, "mi_vessel": np.where(mi, mi_vessel, ""),
        "lvef": lvef, "pcwp": pcwp, "k_base": k_base, "lbbb": lbbb, "rbbb": rbbb, "lafb": lafb, "lvh": lvh,
        "avb1": avb1,
        # stable individual ECG traits
        "hr_base": np.clip(rng.normal(68, 9, n), 45, 105), "axis_deg": rng.normal(45, 22, n),
        "r_posterior": rng.normal(-0.22, 0.15, n), "r_amp": np.exp(rng.normal(0, 0.22, n)),
        "t_amp": np.exp(rng.normal(0, 0.32, n)), "t_axis_offset": rng.normal(0, 10, n),
        "pr_base": rng.normal(152, 15, n), "qrs_base": rng.normal(90, 7, n), "qtc_base": rng.normal(410, 16, n),
    })
    return patients, stenosis


def ischaemia(max_stenosis_pct: np.ndarray) -> np.ndarray:
    """Ischaemic burden of a vessel from its maximal stenosis: 0 up to 40 %, rising to 1 at 100 %."""
    return np.clip((np.asarray(max_stenosis_pct) - 40) / 60, 0, 1) ** 1.3


def morphology(ecgs: pd.DataFrame, rng: np.random.Generator) -> tuple[Beats, Rhythm, Noise, pd.DataFrame]:
    """Beat morphology, rhythm and noise for each row of ``ecgs`` (patient latents joined with the per-ECG
    ``potassium`` and ``heart_rate``), and the ground-truth intervals and axes of each ECG."""
    b = len(ecgs)
    g = {col: ecgs[col].to_numpy() for col in ecgs.columns}
    female = g["female"].astype(bool)
    age = g["age"]
    lvef_f = np.clip((55 - g["lvef"]) / 35, 0, 1)
    k = g["potassium"]
    hyper = np.clip(k - 5.0, 0, None)
    hypo = np.clip(3.8 - k, 0, None)
    lbbb, rbbb, lafb = g["lbbb"].astype(bool), g["rbbb"].astype(bool), g["lafb"].astype(bool)
    lvh, avb1 = g["lvh"].astype(bool), g["avb1"].astype(bool)

    hr = g["heart_rate"]
    rr = 60.0 / hr
    qrs_ms = g["qrs_base"] + 12 * lvef_f + 12 * np.clip(k - 6.0, 0, None) + lbbb * rng.uniform(45, 65, b) \
        + rbbb * rng.uniform(35, 50, b) + lvh * 6
    pr_ms = g["pr_base"] + 0.35 * (age - 55) + avb1 * rng.uniform(60, 110, b)
    p_ms = np.clip(98 + 0.8 * (g["pcwp"] - 12) + rng.normal(0, 8, b), 75, 170)
    qtc_ms = g["qtc_base"] + 12 * female + 22 * hypo + 0.4 * np.clip(qrs_ms - 100, 0, None)
    qt_ms = qtc_ms * np.sqrt(rr)

    offset = np.zeros((b, len(COMPONENTS)))
    width = np.full((b, len(COMPONENTS)), 0.01)
    vec = np.zeros((b, len(COMPONENTS), 3))
    qrs = qrs_ms / 1000
    qrs_on = -0.5 * qrs
    # QRS: septal Q, main R, terminal S
    axis = np.deg2rad(np.where(lafb, rng.normal(-50, 8, b), g["axis_deg"]))
    r_dir = _unit(np.stack([np.cos(axis), np.sin(axis), g["r_posterior"]], axis=1))
    r_amp = 1.35 * g["r_amp"] * (1 - 0.25 * lvef_f) * (1 - 0.0045 * (age - 50)) * np.where(female, 0.85, 1.0)
    r_amp *= np.where(lvh, rng.uniform(1.5, 1.9, b), 1.0)
    offset[:, C["Q"]], width[:, C["Q"]] = -0.3 * qrs, 0.06 * qrs
    offset[:, C["R"]], width[:, C["R"]] = 0.0, 0.1 * qrs
    offset[:, C["S"]], width[:, C["S"]] = 0.28 * qrs, 0.08 * qrs
    # septal depolarisation: left-to-right and anterior, of very different size from person to person
    septal = _unit(np.array([-0.5, 0.1, 0.6]) + rng.normal(0, 0.35, (b, 3)))
    septal_amp = 0.2 * np.exp(rng.normal(0, 0.35, b))
    vec[:, C["Q"]] = np.where(lbbb[:, None], 0.06 * _unit(np.array([0.7, 0.0, -0.3])), septal_amp[:, None] * septal) * r_amp[:, None]
    vec[:, C["R"]] = r_dir * r_amp[:, None]
    vec[:, C["S"]] = _unit(np.array([-0.3, -0.35, -0.75])) * (0.32 * r_amp * np.exp(rng.normal(0, 0.2, b)))[:, None]
    # bundle branch blocks: a slow late force (left-posterior in LBBB, right-anterior in RBBB)
    offset[:, C["R_late"]] = np.where(lbbb, 0.05, 0.06) * (qrs / 0.14)
    width[:, C["R_late"]] = np.where(lbbb, 0.032, 0.022) * (qrs / 0.14)
    vec[:, C["R_late"]] = (lbbb[:, None] * 0.75 * _unit(np.array([0.8, 0.1, -0.6]))
                           + rbbb[:, None] * 0.45 * _unit(np.array([-0.6, 0.1, 0.8]))) * r_amp[:, None]
    # prior infarction: an initial force away from the territory (Q waves), T inversion there
    t_extra = np.zeros((b, 3))
    st = np.zeros((b, 3))
    for vessel in VESSELS:
        terr = TERRITORY[vessel]
        infarct = (g["mi_vessel"] == vessel)[:, None]
        infarct_size = infarct * np.exp(rng.normal(0, 0.45, (b, 1)))  # small to large scars
        vec[:, C["Q"]] += infarct_size * (-0.05 * terr) * r_amp[:, None]
        t_extra += infarct_size * (-0.05 * terr)
        # ischaemia of the vessel: ST depression and T inversion along its territory
        isch = ischaemia(g[f"max_{vessel}"])[:, None] * np.exp(rng.normal(0, 0.25, (b, 1)))
        st += -0.08 * isch * terr
        t_extra += -0.22 * isch * terr
    width[:, C["Q"]] = np.where(g["mi"].astype(bool), 0.075 * qrs, width[:, C["Q"]])
    # T wave (and ST): concordant with R normally, discordant in bundle branch block, strain in LVH
    t_axis = 0.5 * axis + 0.5 * np.deg2rad(45) + np.deg2rad(g["t_axis_offset"])  # T follows QRS, less spread
    t_dir = _unit(np.stack([np.cos(t_axis), np.sin(t_axis), g["r_posterior"] + 0.6], axis=1))
    t_amp = 0.38 * g["t_amp"] * (1 + 0.4 * hyper + 0.1 * hyper**2) / (1 + 0.9 * hypo) * np.where(female, 0.85, 1.0)
    t_vec = t_dir * t_amp[:, None]
    t_vec = np.where((lbbb | rbbb)[:, None], -0.7 * t_vec + 0.1 * t_dir, t_vec)
    t_vec = np.where(lvh[:, None], t_vec - 0.35 * r_dir * np.clip(r_amp, 0, 2.5)[:, None] * 0.3, t_vec)
    st += np.where(lvh[:, None], -0.05 * r_dir, 0) + np.where(lbbb[:, None], -0.08 * r_dir, 0)
    t_sigma = 0.048 * np.exp(rng.normal(0, 0.12, b)) / (1 + 0.15 * hyper)
    t_end = qrs_on + qt_ms / 1000
    # T ends where its tangent meets the baseline, about 2 sigma after its peak (as ECG machines measure it)
    offset[:, C["T"]], width[:, C["T"]] = t_end - 2.0 * t_sigma, t_sigma
    vec[:, C["T"]] = t_vec + t_extra
    offset[:, C["ST"]] = 0.5 * qrs + 0.45 * (offset[:, C["T"]] - 0.5 * qrs)
    width[:, C["ST"]] = np.clip(0.3 * (offset[:, C["T"]] - 0.5 * qrs), 0.02, None)
    vec[:, C["ST"]] = st
    offset[:, C["U"]], width[:, C["U"]] = t_end + 0.07, 0.035
    vec[:, C["U"]] = t_dir * (0.02 + 0.12 * hypo)[:, None]
    # P waves: the main atrial force, and the terminal left-atrial force (biphasic P in V1 with high mPCWP)
    p = p_ms / 1000
    p_on = qrs_on - pr_ms / 1000
    p_amp = 0.16 * np.exp(rng.normal(0, 0.25, b)) * np.clip(1 - 0.25 * np.clip(k - 5.5, 0, None), 0.1, 1)
    offset[:, C["P"]], width[:, C["P"]] = p_on + 0.45 * p, p / 5.5
    vec[:, C["P"]] = _unit(np.array([0.55, 0.8, 0.15])) * p_amp[:, None]
    offset[:, C["P_term"]], width[:, C["P_term"]] = p_on + 0.75 * p, p / 7
    p_term = (0.03 + 0.003 * np.clip(g["pcwp"] - 12, 0, None)) * np.exp(rng.normal(0, 0.3, b))
    vec[:, C["P_term"]] = _unit(np.array([0.15, 0.1, -1.0])) * p_term[:, None]

    beats = Beats(offset_s=offset, width_s=width, vector_mv=vec)
    rhythm = Rhythm(heart_rate=hr, hrv=np.clip(rng.normal(0.025, 0.01, b), 0.005, 0.06) * (1 - 0.5 * lvef_f),
                    rsa=np.clip(rng.normal(0.03, 0.015, b), 0, 0.08) * np.clip(1.3 - 0.01 * age, 0.2, 1),
                    resp_hz=rng.uniform(0.2, 0.33, b))
    noise = Noise(wander_mv=rng.uniform(0.02, 0.25, b), powerline_mv=rng.uniform(0.0, 0.03, b),
                  powerline_hz=np.where(rng.random(b) < 0.5, 50.0, 60.0), muscle_mv=rng.uniform(0.003, 0.03, b),
                  gain_sd=rng.uniform(0.02, 0.12, b))

    def frontal_axis(v: np.ndarray) -> np.ndarray:
        return np.round(np.rad2deg(np.arctan2(v[:, 1], v[:, 0])))

    truth = pd.DataFrame({
        "rr_ms": 1000 * rr, "pr_ms": pr_ms, "p_ms": p_ms, "qrs_ms": qrs_ms, "qt_ms": qt_ms, "qtc_ms": qtc_ms,
        "p_axis": frontal_axis(vec[:, C["P"]]), "qrs_axis": frontal_axis(vec[:, C["Q"]] + vec[:, C["R"]] + vec[:, C["S"]]),
        "t_axis": frontal_axis(vec[:, C["T"]]), "r_amp": r_amp,
    }, index=ecgs.index)
    return beats, rhythm, noise, truth
