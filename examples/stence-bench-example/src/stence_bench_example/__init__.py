"""An example third-party stence-bench plugin package."""
