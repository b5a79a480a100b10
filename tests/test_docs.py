"""The documentation runs: the embedding guide is a doctest, the reference tables are
generated from the code's own tables and must match the committed page, and the
README's example executes."""

import doctest
import pathlib
import re

from its_core.tools import docgen

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_embedding_guide_runs_as_a_doctest():
    result = doctest.testfile(str(ROOT / "docs" / "embedding.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS)
    assert result.attempted > 20 and result.failed == 0


def test_reference_page_matches_the_code():
    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == docgen.render(), \
        "regenerate: python -m its_core.tools.docgen > docs/reference.md"


def test_readme_example_runs():
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["intids"].tolist() == [8195, 0]
    assert namespace["cpus"].tolist() == [2, -1]
