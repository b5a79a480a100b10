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


def _gicv4_example(version):
    """docs/gicv4.md's worked example: the state it describes, saved."""
    import its_core
    from front_end_helpers import baser_value, cbaser_value, pendbaser_value, propbaser_value
    from its_core.frontend import commands as C
    from its_core.frontend import registers as R
    from its_core.frontend.registers import BaserType, PageSize

    memory = its_core.GuestMemory(1 << 20)
    its = its_core.ITS(memory, num_cpus=2, intid_bits=14, gic_version=version)
    rd = its.redistributors
    for cpu in range(2):
        rd.mmio_write(cpu, R.GICR_PROPBASER.offset, propbaser_value(0x50000, 13), 8)
        rd.mmio_write(cpu, R.GICR_PENDBASER.offset,
                      pendbaser_value(0x60000 + cpu * 0x10000, ptz=True), 8)
        rd.mmio_write(cpu, R.GICR_CTLR.offset, 1, 4)
    its.mmio_write(R.GITS_CBASER.offset, cbaser_value(0x1000), 8)
    for register, table, address in ((R.GITS_BASER0, BaserType.DEVICES, 0x10000),
                                     (R.GITS_BASER1, BaserType.COLLECTIONS, 0x11000),
                                     (R.GITS_BASER2_VPES, BaserType.VPES, 0x12000)):
        its.mmio_write(register.offset, baser_value(table, address, page_size=PageSize.SIZE_4K),
                       8)
    its.mmio_write(R.GITS_CTLR.offset, 1, 4)
    commands = [C.mapd(2, 0x20000, 4)]
    if version == "4.1":
        commands += [C.vmapp_v41(5, 1, 0x30000, 13, 0x40000, 8301, alloc=True),
                     C.vsgi(5, 1, 0x20, True, True)]
    else:
        commands += [C.vmapp(5, 1, 0x30000, 13)]
    for command in commands + [C.vmapti(2, 3, 5, 8205, 8300)]:
        its.submit(command)
    assert len(its.errors) == 0
    if version == "4.1":
        its.mmio_write(R.GITS_SGIR.offset, R.GITS_SGIR_LAYOUT.encode(vPEID=5, vINTID=1), 8)
    state = its.save()
    assert state["format"] == "its-core-rev1"
    return memory


def test_gicv4_worked_example_bytes():
    """Every row of docs/gicv4.md's worked example: the saved bytes at its address."""
    page = (ROOT / "docs" / "gicv4.md").read_text()
    assert page.startswith("# GICv4 and GICv4.1\n")
    section = page.split("## Saving a GICv4 ITS: its-core-rev1", 1)[1]
    rows = re.findall(r"^\| ([^|]+) \| (4\.[01]) \| (0x[0-9a-f]+) \| `([0-9a-f ]+)` \|$",
                      section, re.M)
    assert sorted((entry.split(" of ")[0], version) for entry, version, _, _ in rows) == [
        ("ITE", "4.0"), ("ITE", "4.1"), ("VTE", "4.0"), ("VTE", "4.1")]
    memories = {version: _gicv4_example(version) for version in ("4.0", "4.1")}
    for entry, version, address, text in rows:
        expected = bytes.fromhex(text)
        assert len(expected) == {"ITE": 16, "VTE": 8 if version == "4.0" else 32}[
            entry.split(" of ")[0]], entry
        assert memories[version].read(int(address, 16), len(expected)) == expected, \
            (entry, version)
