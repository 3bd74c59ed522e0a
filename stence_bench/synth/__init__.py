"""Synthetic ECG cohort: generation and realism checks against real records."""
