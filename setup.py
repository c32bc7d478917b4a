"""Build hook: setuptools needs setup.py for cffi_modules (the relay engine)."""

from setuptools import setup

setup(cffi_modules=["svqtui/engine/build_relay.py:ffibuilder"])
