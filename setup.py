"""Package discovery, the one part of the build pyproject.toml cannot state.

Three import packages come from three folders, two of them under other names (`sweeps/`
installs as fno_sweeps and `analysis/` as fno_analysis, so that they cannot clash with
other distributions' top-level `sweeps` or `analysis`). Every subpackage of each folder
is found here, so a new one can never be left out of the wheel (fno.data once was).
"""

from setuptools import find_packages, setup

# import name -> source folder
PACKAGE_FOLDERS = {"fno": "fno", "fno_sweeps": "sweeps", "fno_analysis": "analysis"}


def packages_in(name: str, folder: str) -> list[str]:
    """`name` and every package below `folder`, named under `name`."""
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


setup(
    packages=[package for name, folder in PACKAGE_FOLDERS.items() for package in packages_in(name, folder)],
    package_dir=PACKAGE_FOLDERS,
)
