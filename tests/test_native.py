import pytest

from npspeech import _native
from npspeech.errors import ExtensionMissingError


def test_missing_extension_is_an_error_when_required(monkeypatch):
    monkeypatch.setenv("NPSPEECH_REQUIRE_EXT", "1")
    with pytest.raises(ExtensionMissingError, match="no_such_kernel"):
        _native.load_extension("no_such_kernel")


def test_missing_extension_warns_and_falls_back(monkeypatch):
    monkeypatch.setenv("NPSPEECH_REQUIRE_EXT", "0")
    with pytest.warns(RuntimeWarning, match="slower Python path"):
        assert _native.load_extension("no_such_kernel") is None


def test_built_extension_loads(monkeypatch):
    # CI sets NPSPEECH_REQUIRE_EXT=1, so a build that lost the extension fails here.
    module = _native.load_extension("ctc_greedy")
    if module is None:
        pytest.skip("extensions not built in this checkout")
    assert hasattr(module, "best_path")
