"""Built-in source layouts (dataset readers). Registration only: the readers live in stence_bench.data.layouts."""

from __future__ import annotations

from stence_bench import TWELVE_LEADS, DatasetCard, DatasetSpec, hookimpl

_LAYOUTS = "stence_bench.data.layouts"
_EACH_RECORD = "none in the files: each record stands for its own patient"

WFDB_CARD = DatasetCard(
    title="A folder of WFDB records", licence="that of the source", access="local", units="mV",
    patient_id=_EACH_RECORD, splits="none: tasks split by patient (seeded)",
    notes="Any sampling rate and lead set; channels that are not ECG leads are left out.",
)
PTBXL_CARD = DatasetCard(
    title="PTB-XL, a large publicly available electrocardiography dataset", licence="CC-BY-4.0", access="open",
    url="https://physionet.org/content/ptb-xl/", sampling_rates=(500.0, 100.0),
    units="mV", leads=TWELVE_LEADS,
    patient_id="ptbxl_database.csv patient_id (one patient, several ECGs)",
    splits="strat_fold 1-10 by patient: 1-8 train, 9 validation, 10 test (tasks with split = 'strat_fold')",
    size="21,799 ECGs of 18,869 patients, 10 s each",
)
CINC2021_CARD = DatasetCard(
    title="PhysioNet/Computing in Cardiology Challenge 2021 training set", licence="CC-BY-4.0", access="open",
    url="https://physionet.org/content/challenge-2021/", sampling_rates=(500.0, 1000.0, 257.0), units="mV",
    leads=TWELVE_LEADS, patient_id=_EACH_RECORD,
    splits="none published for the training set (the test sets are hidden): tasks split by patient (seeded)",
    size="88,253 ECGs from 8 sources (CPSC, CPSC-Extra, INCART, PTB, PTB-XL, Georgia, Chapman-Shaoxing, Ningbo)",
    notes=("Its HR* records are PTB-XL's, its JS* records Chapman-Shaoxing/Ningbo's, its A* records CPSC 2018's "
           "training set (contains = ptbxl, chapman-ningbo, cpsc2018); labels are SNOMED-CT codes in '# Dx'."),
)
MIMIC_IV_ECG_CARD = DatasetCard(
    title="MIMIC-IV-ECG: Diagnostic Electrocardiogram Matched Subset", licence="ODbL-1.0", access="open",
    url="https://physionet.org/content/mimic-iv-ecg/", doi="10.13026/4nqg-sb35", sampling_rates=(500.0,),
    units="mV", leads=TWELVE_LEADS,
    patient_id="MIMIC-IV subject_id (shared with every MIMIC-IV module: labs, echo, notes)",
    splits="none: tasks split by patient (seeded)", size="about 800,000 ECGs of about 160,000 patients, 10 s each",
    notes="Files store the leads as I, II, III, aVR, aVF, aVL, V1-V6: read by name, never by position.",
)
ECHONEXT_CARD = DatasetCard(
    title="EchoNext: a dataset for detecting echocardiogram-confirmed structural heart disease from ECGs",
    licence="PhysioNet restricted health data licence (see the project page)", access="restricted",
    url="https://physionet.org/content/echonext/", sampling_rates=(250.0,), units="z-score", leads=TWELVE_LEADS,
    patient_id="patient_key of echonext_metadata_100k.csv (one patient, several ECGs)",
    splits=("published by patient: train / val / test (72,475 / 4,626 / 5,442 ECGs) and 17,457 no_split ECGs of "
            "validation or test patients; tasks with split = 'official' use it, no_split ECGs are neither trained "
            "nor scored on and stay out of pretraining"),
    size="100,000 ECGs of 36,286 patients, 10 s each",
    notes=("Published after baseline-wander removal, per-lead clipping and per-lead z-scoring with training-set "
           "constants: not millivolts, and millivolts cannot be recovered. Contracts that normalise see the same "
           "input as from millivolts; normalization 'none' and objectives augmenting in millivolts are refused."),
)
CODE15_CARD = DatasetCard(
    title="CODE-15%: a large scale annotated dataset of 12-lead ECGs", licence="CC-BY-4.0", access="open",
    url="https://zenodo.org/records/4916206", doi="10.5281/zenodo.4916206", sampling_rates=(400.0,), units="mV",
    leads=TWELVE_LEADS, patient_id="patient_id of exams.csv (one patient, several exams)",
    splits="none: tasks split by patient (seeded); CODE-test (827 exams) is a separate dataset",
    size="345,779 exams of 233,770 patients, 7 or 10 s",
    notes=("HDF5 shards exams_part{0..17}.hdf5 (exam_id, tracings [N, 4096, 12]); the publisher's zero padding of "
           "7 s exams is cut off. Values read as millivolts, as the Challenge 2025 converts them (the README's "
           "'1e-4 V' wording disagrees: option mv_per_unit)."),
)
CHAPMAN_CARD = DatasetCard(
    title="A large scale 12-lead electrocardiogram database for arrhythmia study (Chapman-Shaoxing and Ningbo)",
    licence="CC-BY-4.0", access="open", url="https://physionet.org/content/ecg-arrhythmia/", sampling_rates=(500.0,),
    units="mV", leads=TWELVE_LEADS, patient_id=_EACH_RECORD,
    splits="none: tasks split by patient (seeded)", size="45,152 ECGs of 10 s",
    notes=("WFDB .hea/.mat with # Age, # Sex, # Dx (SNOMED-CT), as the Challenge 2021's JS records, which are the "
           "same ECGs (cinc2021 contains chapman-ningbo)."),
)
SPH_CARD = DatasetCard(
    title="A large-scale multi-label 12-lead electrocardiogram database with standardized diagnostic statements "
          "(Shandong Provincial Hospital, SPH)",
    licence="CC-BY-4.0", access="open", url="https://doi.org/10.6084/m9.figshare.c.5779802",
    doi="10.6084/m9.figshare.c.5779802", sampling_rates=(500.0,), units="mV", leads=TWELVE_LEADS,
    patient_id="Patient_ID of metadata.csv (24,666 patients for 25,770 records)",
    splits=("none published as a file: tasks split by patient (seeded); the paper's 80/20 analysis split (every "
            "record of a patient with several in the test part) has no validation part and is not offered"),
    size="25,770 ECGs of 24,666 patients, 10 to 60 s",
    notes=("records/A00001.h5 ..., each with one HDF5 dataset 'ecg' [12, N]; metadata.csv (ECG_ID, AHA_Code, "
           "Patient_ID, Age, Sex, N, Date), code.csv (Code, Description). AHA_Code: statements split by ';', "
           "modifiers joined by '+' (codes 200-499, the publisher's rule). Values read as millivolts, as the "
           "public readers do (option mv_per_unit). Filtered by the recording machine (power line, baseline "
           "wander, muscle noise)."),
)
CPSC2018_CARD = DatasetCard(
    title="The China Physiological Signal Challenge 2018 (CPSC 2018) training set", licence="CC-BY-4.0",
    access="open", url="http://2018.icbeb.org/Challenge.html", doi="10.1166/jmihi.2018.2442",
    sampling_rates=(500.0,), units="mV", leads=TWELVE_LEADS, patient_id=_EACH_RECORD,
    splits="none published for the training set (the test set is hidden): tasks split by patient (seeded)",
    size="6,877 ECGs of 6 to 60 s",
    notes=("One MATLAB file per recording (A0001.mat ...) with a struct ECG {sex, age, data [12, N] in mV}; "
           "REFERENCE.csv (Recording, First_label, Second_label, Third_label) with up to three of nine classes "
           "numbered 1-9. The Challenges 2020 and 2021 republish these recordings (cinc2021 contains cpsc2018); "
           "whole-microvolt values are stored as their WFDB copies are (int16, 1000 per mV), so both copies share "
           "a checksum. The licence is the Challenge 2020/2021 copy's; the 2018 site states none."),
)
DICOM_CARD = DatasetCard(
    title="A folder of DICOM 12-lead ECG waveforms and X-ray angiograms", licence="that of the source",
    access="local", units="mV", patient_id="DICOM PatientID (0010,0020)",
    splits="none: tasks split by patient (seeded)",
)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="wfdb", reader=f"{_LAYOUTS}.wfdb_folder:WfdbLayout",
        formats=("wfdb-16", "wfdb-24", "wfdb-32", "wfdb-61", "wfdb-80", "wfdb-160", "wfdb-212", "wfdb-mat"),
        description="any folder of WFDB records (.hea + .dat/.mat), any sampling rate and lead count",
        card=WFDB_CARD,
    ))
    register(DatasetSpec(
        name="ptbxl", reader=f"{_LAYOUTS}.ptbxl:PtbxlLayout", formats=("wfdb-16",),
        modalities=("ecg", "patient_id", "labels", "metadata"),
        description="PTB-XL: ptbxl_database.csv, scp_statements.csv, records100/, records500/",
        citation="Wagner et al., Sci Data 2020", card=PTBXL_CARD,
    ))
    register(DatasetSpec(
        name="cinc2021", reader=f"{_LAYOUTS}.cinc2021:Cinc2021Layout", formats=("wfdb-mat",),
        modalities=("ecg", "labels", "metadata"),
        # its HR* records are PTB-XL's, its JS* Chapman-Shaoxing/Ningbo's, its A* CPSC 2018's training set
        contains=("ptbxl", "chapman-ningbo", "cpsc2018"),
        description="PhysioNet/CinC Challenge 2021: WFDB .mat records with # Age, # Sex, # Dx (SNOMED-CT)",
        citation="Reyna et al., CinC 2021", card=CINC2021_CARD,
    ))
    register(DatasetSpec(
        name="mimic-iv-ecg", reader=f"{_LAYOUTS}.mimic_iv_ecg:MimicIvEcgLayout", formats=("wfdb-16",),
        version="2",  # 2: the report's statements kept as a list (meta "statements")
        modalities=("ecg", "patient_id", "text"),
        description="MIMIC-IV-ECG: files/pNNNN/pX/sY/Y.hea, record_list.csv, machine_measurements.csv",
        citation="Gow et al., PhysioNet 2023", card=MIMIC_IV_ECG_CARD,
    ))
    register(DatasetSpec(
        name="echonext", reader=f"{_LAYOUTS}.echonext:EchoNextLayout", formats=("numpy",),
        modalities=("ecg", "patient_id", "labels", "metadata"),
        description="EchoNext: echonext_metadata_100k.csv, EchoNext_{train,val,test,no_split}_waveforms.npy",
        citation="Elias & Finer, PhysioNet 2025", card=ECHONEXT_CARD,
    ))
    register(DatasetSpec(
        name="code15", reader=f"{_LAYOUTS}.code15:Code15Layout", formats=("hdf5",),
        modalities=("ecg", "patient_id", "labels", "metadata"),
        description="CODE-15%: exams.csv, exams_part{0..17}.hdf5 (exam_id, tracings)",
        citation="Ribeiro et al., Nat Commun 2020; Zenodo 4916206", card=CODE15_CARD,
    ))
    register(DatasetSpec(
        name="chapman-ningbo", reader=f"{_LAYOUTS}.cinc2021:ChapmanNingboLayout", formats=("wfdb-mat",),
        modalities=("ecg", "labels", "metadata"),
        description="Chapman-Shaoxing and Ningbo (PhysioNet ecg-arrhythmia): WFDBRecords/*/*/JS*.hea with # Dx",
        citation="Zheng et al., Sci Data 2020; PhysioNet 2022", card=CHAPMAN_CARD,
    ))
    register(DatasetSpec(
        name="sph", reader=f"{_LAYOUTS}.sph:SphLayout", formats=("hdf5",),
        modalities=("ecg", "patient_id", "labels", "metadata"),
        description="SPH (Shandong Provincial Hospital): metadata.csv, code.csv, records/A*.h5 (dataset ecg)",
        citation="Liu et al., Sci Data 2022", card=SPH_CARD,
    ))
    register(DatasetSpec(
        name="cpsc2018", reader=f"{_LAYOUTS}.cpsc2018:Cpsc2018Layout", formats=("matlab",),
        modalities=("ecg", "labels", "metadata"),
        description="CPSC 2018 training set: REFERENCE.csv and A*.mat (struct ECG: sex, age, data)",
        citation="Liu et al., J Med Imaging Health Inform 2018", card=CPSC2018_CARD,
    ))
    register(DatasetSpec(
        name="dicom", reader=f"{_LAYOUTS}.dicom_folder:DicomLayout", formats=("dicom-ecg", "dicom-xa"),
        modalities=("ecg", "patient_id", "angiography"),
        description="DICOM 12-lead ECG waveforms (records) and X-ray angiograms (the angiography table)",
        card=DICOM_CARD,
    ))
