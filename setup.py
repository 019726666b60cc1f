"""Package list for setuptools (everything else is in pyproject.toml).

``[tool.setuptools.packages.find]`` can only find folders under their own names, but the zoo's
folder ``extractors/`` is installed as ``featlt.extractors`` (package-dir in pyproject.toml), so
the list is built here: every ``featlt`` package plus ``featlt.extractors``.
"""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["featlt", "featlt.*"]), "featlt.extractors"])
