"""What pyproject.toml cannot say: the repository's top-level ``weights/`` folder (the shipped weights
files and their model card) is installed as the package data ``dbcli/shipped_weights/``, where
``dbcli.weights.weights_dir`` finds it in a wheel. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    # every subpackage, found (not a hand-kept list), plus the weights folder mapped into the package
    packages=[*find_packages(include=["dbcli", "dbcli.*"]), "dbcli.shipped_weights"],
    package_dir={"dbcli.shipped_weights": "weights"},
)
