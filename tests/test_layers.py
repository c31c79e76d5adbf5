"""Layers that point one way: no module imports a module of a higher layer (`LAYERS` in scripts/import_graph.py),
except the upward imports listed below, which are known and waiting to be removed. A new upward import fails here,
and so does a listed one that is gone (take it off the list). Also checks the script's reading of imports, layers and
function lengths on a small package written for the test."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"

# The upward imports the tree has today, (importer, imported): each is inside a function, and each is to be removed
# by moving what is imported into the lower layer (or the importer up).
KNOWN_UPWARD = {
    # data -> metrics: learning error patterns runs ERRANT's edit extraction, which lives with the ERRANT metric
    ("writetune.data.learned_errors", "writetune.metrics.errant_f05"),
    # data -> metrics: the IFBench reader takes its prompts from the IFBench verifier module
    ("writetune.data.sources", "writetune.metrics.ifbench"),
    # data -> models: the learned-error patterns are cached in `models.cache_dir()`
    ("writetune.data.sources", "writetune.models"),
    # metrics -> models: IFBench's NLTK data lives in `models.cache_dir()`
    ("writetune.metrics.ifbench", "writetune.models"),
}


def load_script():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


graph = load_script()


def test_no_module_imports_a_higher_layer():
    upward = graph.upward_imports()
    found = {(i.importer, i.imported) for i in upward}
    new = sorted(f"{i.importer}:{i.line} imports {i.imported} (layer {graph.layer(i.importer)} -> "
                 f"{graph.layer(i.imported)})" for i in upward if (i.importer, i.imported) not in KNOWN_UPWARD)
    assert not new, "imports of a higher layer:\n" + "\n".join(new)
    gone = sorted(KNOWN_UPWARD - found)
    assert not gone, f"no longer imported upward, take off KNOWN_UPWARD: {gone}"


def test_every_module_has_a_layer():
    for module in graph.modules():
        graph.layer(module)  # raises for a module that no layer names


def test_the_data_layer_imports_nothing_above_it_at_module_level():
    top = [i for i in graph.imports() if i.importer.startswith("writetune.data") and not i.nested
           and graph.layer(i.imported) > graph.layer(i.importer)]
    assert top == []


def _package(root: Path) -> Path:
    files = {
        "writetune/__init__.py": "",
        "writetune/config.py": "import json\n",
        "writetune/data/__init__.py": "from writetune.data.readers import read\n",
        "writetune/data/readers.py": "from writetune import config\n\ndef read():\n    return 1\n",
        "writetune/data/evalsets.py": ("from . import readers\n\n\ndef sets():\n    from writetune.metrics import m\n"
                                       "    return m\n"),
        "writetune/metrics/__init__.py": "from writetune.data import readers\n\nclass M:\n    def f(self):\n"
                                         "        a = 1\n        b = 2\n        return a + b\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_graph_of_a_small_package(tmp_path):
    src = _package(tmp_path)
    found = {(i.importer, i.imported, i.nested) for i in graph.imports(src)}
    assert found == {
        ("writetune.data", "writetune.data.readers", False),
        ("writetune.data.readers", "writetune.config", False),
        ("writetune.data.evalsets", "writetune.data.readers", False),  # a relative import
        ("writetune.data.evalsets", "writetune.metrics", True),
        ("writetune.metrics", "writetune.data.readers", False),
    }
    assert [(i.importer, i.imported) for i in graph.upward_imports(src)] == [
        ("writetune.data.evalsets", "writetune.metrics")]
    longest = graph.functions(src)[0]
    assert (longest.module, longest.name, longest.length) == ("writetune.metrics", "M.f", 4)


def test_layers_are_found_by_the_longest_name():
    assert graph.layer("writetune.data.build") == graph.layer("writetune.data")
    assert graph.layer("writetune.evaluate.runner") > graph.layer("writetune.report")
    assert graph.layer("writetune") == graph.layer("writetune.config")
    with pytest.raises(ValueError, match="writetune.newmodule"):
        graph.layer("writetune.newmodule")  # the package name alone does not place a new top-level module


def test_the_script_prints_the_graph_and_the_longest_functions():
    result = subprocess.run([sys.executable, str(SCRIPT), "--longest", "3"], capture_output=True, text=True,
                            check=True)
    assert "writetune.evaluate.runner [" in result.stdout
    assert "# upward imports" in result.stdout
    assert len(result.stdout.split("# longest functions (3)")[1].strip().splitlines()) == 3


def test_every_import_inside_a_function_gives_its_reason():
    unexplained = [f"{i.module}:{i.line}: {i.text}" for i in graph.unexplained_nested_imports()]
    assert not unexplained, "imports inside functions without a reason comment:\n" + "\n".join(unexplained)


def test_a_nested_import_without_a_reason_is_found(tmp_path):
    files = {
        "writetune/__init__.py": "",
        "writetune/a.py": ("def f():\n"
                           "    import json  # a reason on the line\n"
                           "    # a reason above, for the block under it\n"
                           "    import os\n"
                           "    from writetune import (\n"
                           "        b,\n"
                           "    )\n"
                           "    x = 1\n"
                           "    import re\n"
                           "    return json, os, b, x, re\n"),
        "writetune/b.py": "import sys\n\n\nclass C:\n    def g(self):\n        import csv\n        return csv\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    found = [(i.module, i.line, i.text) for i in graph.unexplained_nested_imports(tmp_path)]
    assert found == [("writetune.a", 9, "import re"), ("writetune.b", 6, "import csv")]
