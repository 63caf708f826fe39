"""Every example in hitl's docstrings runs as written."""

import doctest
import importlib
import pkgutil

import pytest

import hitl

MODULES = sorted(m.name for m in pkgutil.walk_packages(hitl.__path__, "hitl.") if m.name != "hitl.__main__")


@pytest.mark.parametrize("name", ["hitl", *MODULES])
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_the_examples_are_found():
    # A walk that found nothing would pass every case above.
    finder = doctest.DocTestFinder()
    n = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name)))
    assert len(MODULES) > 30 and n > 200
