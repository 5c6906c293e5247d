"""The chaos marker: the full run happens only when asked for (``make chaos`` or CHAOS=1).

``make test`` runs plain ``pytest``: the short run (no ``chaos`` marker) runs there, and the
full run is skipped unless the marker expression names ``chaos`` or ``CHAOS=1`` is set.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: the full chaos run (minutes); `make chaos` or CHAOS=1 selects it"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "chaos" in (config.getoption("markexpr", "") or "") or os.environ.get("CHAOS") == "1"
    if asked:
        return
    skip = pytest.mark.skip(reason="the full chaos run: `make chaos` (or CHAOS=1) runs it")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)
