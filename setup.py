"""Package list for setuptools (the rest of the metadata is in pyproject.toml).

quadd_codec and quadd_train are found with their subpackages; the CLI lives in `cli/`
and installs as `quadd_cli` (pyproject's package-dir), which discovery cannot find.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["quadd_codec", "quadd_codec.*", "quadd_train",
                                        "quadd_train.*"]), "quadd_cli"])
