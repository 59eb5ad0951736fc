# setuptools needs this shim to run the cffi builder; all metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["build.py:ffibuilder"])
