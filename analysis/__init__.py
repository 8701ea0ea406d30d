"""fno_analysis (the repository's analysis/ folder): learning-curve fits, gains, diagnostics, the report."""
