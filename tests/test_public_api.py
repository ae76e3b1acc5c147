"""The package's public API: every exported name resolves, and importing the package stays light."""

import subprocess
import sys

import patentclf


def test_every_exported_name_resolves_to_what_its_module_defines():
    import importlib

    for name, module in patentclf._EXPORTS.items():
        assert getattr(patentclf, name) is getattr(importlib.import_module(module), name), name
    assert set(patentclf._EXPORTS) <= set(dir(patentclf))


def test_importing_the_package_imports_no_torch():
    code = "import sys, patentclf; from patentclf import CODES; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
