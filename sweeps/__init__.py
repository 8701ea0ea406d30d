"""fno_sweeps (the repository's sweeps/ folder): Ray Tune grids and Optuna searches of fno trials."""
