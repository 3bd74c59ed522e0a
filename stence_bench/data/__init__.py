"""The data layer: readers of source layouts, the ECG store, per-encoder views, patient-level splits.

raw files --readers--> ECG store --per-encoder view--> loaders
"""
