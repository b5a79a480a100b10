"""The layering the docs describe (docs/architecture.md, "Modules" and "Internal
interfaces"), checked on the sources so that it cannot erode unnoticed."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "src" / "its_core"


def _python_sources(folder: str):
    return sorted((PACKAGE / folder).glob("*.py"))


def _private_uses(path: pathlib.Path, names=("its",)):
    """`its._something` attribute uses in a module (the ITS is always called `its`
    in abi/ and tools/, a Redistributors `rd`, a TranslationTables `tables`)."""
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in names and node.attr.startswith("_")
            and not node.attr.startswith("__")]


def test_save_restore_and_dump_use_only_the_internal_interface():
    uses = [use for folder in ("abi", "tools") for path in _python_sources(folder)
            for use in _private_uses(path, ("its", "rd", "tables"))]
    uses += _private_uses(PACKAGE / "testing.py")
    uses += _private_uses(PACKAGE / "snapshot.py", ("its", "rd", "tables"))
    assert uses == []


def test_the_core_imports_nothing_from_the_other_layers():
    imports = []
    for path in sorted((PACKAGE / "core").glob("*.p*")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            if words[:1] in (["from"], ["import"]) and len(words) > 1 and any(
                    words[1].startswith(f"its_core.{layer}") for layer in
                    ("frontend", "abi", "tools")):
                imports.append(f"{path.name}:{number}: {line.strip()}")
    assert imports == []
