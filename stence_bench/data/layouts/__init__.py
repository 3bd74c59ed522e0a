"""Source layouts: how a folder of files becomes records (WFDB, PTB-XL, CinC 2021, MIMIC-IV-ECG, DICOM).

Each is registered as a ``DatasetSpec`` by the built-in plugin ``stence_bench_plugins.datasets``, the same way a
third-party package would add its own layout.
"""
