"""The committed notebooks: clean templates that follow one shape."""

from __future__ import annotations

import ast
import json

import pytest

from runbook_lib.form import REQUIRED
from runbook_lib.params import Params
from runbook_lib.runner import notebooks

NOTEBOOKS = notebooks()


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_shape(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    # Committed without outputs: executed copies go to runs/.
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "has outputs"
    # Opens with a title that names the tutorial's section.
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    # Exactly one parameters cell, listing every parameter as a plain literal.
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse("".join(tagged[0]["source"]))
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign), "parameters cell holds assignments only"
        value = ast.literal_eval(node.value)
        name = node.targets[0].id
        names.append(name)
        # The defaults are the model's: JupyterLab's saved choice fills what is left at them.
        field = Params.model_fields[name]
        assert value == (None if field.is_required() else field.get_default()), name
    assert set(names) == set(Params.model_fields)
    # Out of the reader's way: collapsed in JupyterLab, the required parameters first.
    assert tagged[0]["metadata"].get("jupyter", {}).get("source_hidden") is True
    assert names[: len(REQUIRED)] == list(REQUIRED)
    # Complete kernel metadata, as the kernel reports it: opening the notebook in JupyterLab
    # does not mark it modified.
    meta = nb["metadata"]
    assert meta["kernelspec"] == {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    assert {
        "codemirror_mode",
        "file_extension",
        "mimetype",
        "name",
        "nbconvert_exporter",
        "pygments_lexer",
        "version",
    } <= set(meta["language_info"])
    # Ends by recording its outcome for the runner.
    assert "".join(code[-1]["source"]).strip() == "rb.finish()"
    # Thin: no imports beyond the library, no sys.path edits; and no name it imports
    # hides a parameter (the parameters live in the same namespace).
    for c in code:
        src = "".join(c["source"])
        assert "sys.path" not in src and "import *" not in src
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                bound = {a.asname or a.name.split(".")[0] for a in node.names}
                assert not bound & set(Params.model_fields), f"{bound} hides a parameter"
