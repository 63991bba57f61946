"""Old module locations: the documented ones (``dvis_sdk.convert`` in the README, ``dvis_sdk.hub``,
``dvis_sdk.inference.video_io``) re-export the new modules silently; the never-documented ones warn on import."""
from __future__ import annotations

import importlib
import sys
import warnings

import pytest

SILENT = {
    "dvis_sdk.convert": "dvis_sdk.official",
    "dvis_sdk.hub": "dvis_sdk.weights",
    "dvis_sdk.inference.video_io": "dvis_sdk.io",
}
WARNING = {
    "dvis_sdk.inference.preprocess": "dvis_sdk.ops.preprocess",
    "dvis_sdk.inference.postprocess": "dvis_sdk.ops.postprocess",
    "dvis_sdk.configs.official_defaults": "dvis_sdk.official",
}


def _same_objects(old, new_name):
    new = importlib.import_module(new_name)
    assert old.__all__, old.__name__
    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name), f"{old.__name__}.{name}"


@pytest.mark.parametrize("old, new", sorted(SILENT.items()))
def test_documented_locations_reexport_without_warning(old, new):
    module = importlib.import_module(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(module)
    _same_objects(module, new)


@pytest.mark.parametrize("old, new", sorted(WARNING.items()))
def test_undocumented_locations_warn_on_import_and_reexport(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # a fresh import (restored afterwards)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*import from {new}") as record:
        __import__(old)
    assert record[0].filename == __file__  # attributed to the importing line, not to the import machinery
    _same_objects(sys.modules[old], new)
