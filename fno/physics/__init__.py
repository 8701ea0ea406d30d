"""Exact spectral solvers and data sources for the study's PDE families (PAPER.md)."""
