"""The public API: everything in ``crawler.__all__`` exists, is documented, and comes from a private module."""

from __future__ import annotations

import inspect

import crawler


def test_every_export_exists_and_has_a_docstring() -> None:
    missing = [name for name in crawler.__all__ if not hasattr(crawler, name)]
    assert not missing
    undocumented = [
        name for name in crawler.__all__ if name != "__version__" and not inspect.getdoc(getattr(crawler, name))
    ]
    assert not undocumented


def test_no_public_submodule_leaks_private_names() -> None:
    public = {name for name in dir(crawler) if not name.startswith("_")}
    modules = {name for name in public if inspect.ismodule(getattr(crawler, name))}
    assert public - modules - {"sinks", "testing"} <= set(crawler.__all__)
