"""Built-in source layouts (dataset readers). Registration only: the readers live in stence_bench.data.layouts."""

from __future__ import annotations

from stence_bench import DatasetSpec, hookimpl

_LAYOUTS = "stence_bench.data.layouts"


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="wfdb", reader=f"{_LAYOUTS}.wfdb_folder:WfdbLayout",
        formats=("wfdb-16", "wfdb-24", "wfdb-32", "wfdb-61", "wfdb-80", "wfdb-160", "wfdb-212", "wfdb-mat"),
        description="any folder of WFDB records (.hea + .dat/.mat), any sampling rate and lead count",
    ))
    register(DatasetSpec(
        name="ptbxl", reader=f"{_LAYOUTS}.ptbxl:PtbxlLayout", formats=("wfdb-16",),
        modalities=("ecg", "patient_id", "labels", "metadata"),
        description="PTB-XL: ptbxl_database.csv, scp_statements.csv, records100/, records500/",
        citation="Wagner et al., Sci Data 2020",
    ))
    register(DatasetSpec(
        name="cinc2021", reader=f"{_LAYOUTS}.cinc2021:Cinc2021Layout", formats=("wfdb-mat",),
        modalities=("ecg", "labels", "metadata"), contains=("ptbxl",),  # its HR* records are PTB-XL's
        description="PhysioNet/CinC Challenge 2021: WFDB .mat records with # Age, # Sex, # Dx (SNOMED-CT)",
        citation="Reyna et al., CinC 2021",
    ))
    register(DatasetSpec(
        name="mimic-iv-ecg", reader=f"{_LAYOUTS}.mimic_iv_ecg:MimicIvEcgLayout", formats=("wfdb-16",),
        version="2",  # 2: the report's statements kept as a list (meta "statements")
        modalities=("ecg", "patient_id", "text"),
        description="MIMIC-IV-ECG: files/pNNNN/pX/sY/Y.hea, record_list.csv, machine_measurements.csv",
        citation="Gow et al., PhysioNet 2023",
    ))
    register(DatasetSpec(
        name="dicom", reader=f"{_LAYOUTS}.dicom_folder:DicomLayout", formats=("dicom-ecg", "dicom-xa"),
        modalities=("ecg", "patient_id", "angiography"),
        description="DICOM 12-lead ECG waveforms (records) and X-ray angiograms (the angiography table)",
    ))
