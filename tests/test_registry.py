from __future__ import annotations

import pytest

from occ_research._registry import Registry
from occ_research.exceptions import UnknownNameError


def test_lazy_entries_import_on_first_lookup_and_typos_get_suggestions() -> None:
    registry: Registry[object] = Registry("thing")
    registry.register_lazy("dumps", "json:dumps")
    registry.register("answer")(42)
    import json

    assert registry.get("dumps") is json.dumps
    assert registry.get("answer") == 42 and registry.names() == ["answer", "dumps"]
    with pytest.raises(UnknownNameError, match="did you mean 'dumps'"):
        registry.get("dump")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("answer")(43)
    with pytest.raises(ValueError, match="module:attr"):
        registry.register_lazy("bad", "json.dumps")
