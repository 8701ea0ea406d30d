"""Exact spectral solvers and data sources for the study's PDE families (docs/study-design.md)."""
