"""Every chapter in notebooks/ runs top to bottom, as a student would run it.

The notebooks are kept as jupytext `py:percent` sources (reviewable diffs); each is converted to a
notebook and executed cell by cell in a fresh kernel. A notebook's own assertions (hand-built
piece == ast-min's) are what this test checks: nbclient raises on the first failing cell.
"""

import pathlib

import jupytext
import nbclient
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))


def test_every_chapter_is_collected():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path):
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    executed = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.get("execution_count")]
    assert len(executed) == sum(cell.cell_type == "code" for cell in notebook.cells)
