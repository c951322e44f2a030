"""The documents a newcomer reads render and lead somewhere: README.md and docs/*.md.

Every table has its header, its separator row and the same number of columns in every row
(GitHub's table rules: a `|` inside a cell, even inside `code`, is escaped as `\\|`), and no
line that looks like a table row stands outside a table. Every relative link points to a
file of the repository (not outside it, where a clone has nothing), and every `#anchor` to
a heading of the page it names. The README's layout lists each layer folder, one per line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_SEPARATOR_CELL = re.compile(r"^\s*:?-+:?\s*$")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+).*?\1")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def _cells(row: str) -> list[str]:
    """A table row's cells, split at every `|` not escaped as `\\|` (code spans included)."""
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return re.split(r"(?<!\\)\|", row)


def table_problems(text: str) -> list[str]:
    """What keeps the tables of a markdown text from rendering whole."""
    problems: list[str] = []
    lines = _prose_lines(text)
    i = 0
    while i < len(lines):
        number, line = lines[i]
        if not line.lstrip().startswith("|"):
            i += 1
            continue
        block = [lines[i]]
        while i + 1 < len(lines) and lines[i + 1][0] == block[-1][0] + 1 and lines[i + 1][1].lstrip().startswith("|"):
            i += 1
            block.append(lines[i])
        i += 1
        if len(block) < 2 or not all(_SEPARATOR_CELL.match(c) for c in _cells(block[1][1])):
            problems.append(f"line {number}: a table row with no header and separator row above it "
                            "(a paragraph between rows splits a table)")
            continue
        width = len(_cells(block[0][1]))
        for row_number, row in block[1:]:
            n = len(_cells(row))
            if n != width:
                problems.append(f"line {row_number}: {n} columns where the header has {width} "
                                "(escape a | inside a cell as \\|)")
        if i < len(lines) and lines[i][0] == block[-1][0] + 1:
            after = lines[i][1].strip()
            if after and not after.startswith("#"):
                problems.append(f"line {lines[i][0]}: text right under a table joins it as a row: "
                                "leave a blank line")
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    for _, line in _prose_lines(text):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            name, n = base, 1
            while name in found:  # GitHub numbers repeated headings
                name, n = f"{base}-{n}", n + 1
            found.add(name)
    return found


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links that lead nowhere, or out of the repository."""
    text = path.read_text(encoding="utf-8")
    problems: list[str] = []
    for number, line in _prose_lines(text):
        for target in _LINK.findall(_CODE_SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if file_part and root.resolve() not in dest.parents:
                problems.append(f"line {number}: {target} leads out of the repository (a clone has nothing there)")
                continue
            if not dest.exists():
                problems.append(f"line {number}: {target} does not exist")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"line {number}: {target}: no heading with the anchor #{anchor}")
    return problems


@pytest.mark.fast
@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_renders_whole(path: Path) -> None:
    problems = table_problems(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.fast
@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_of_the_repository(path: Path) -> None:
    problems = link_problems(path)
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.fast
def test_the_checks_catch_what_breaks_a_page(tmp_path: Path) -> None:
    good = "| a | b |\n|---|:-:|\n| `x \\| y` | 2 |\n\ntext\n"
    assert table_problems(good) == []
    assert table_problems("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n") == [
        "line 3: 3 columns where the header has 2 (escape a | inside a cell as \\|)"]
    orphan = "| a | b |\n|---|---|\n| 1 | 2 |\n\na paragraph\n| 3 | 4 |\n"
    assert [p.split(":")[0] for p in table_problems(orphan)] == ["line 6"]
    assert [p.split(":")[0] for p in table_problems("| a |\n|---|\nglued on\n")] == ["line 3"]
    assert table_problems("```\n| not | a table\n```\n") == []

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/there.md#a-heading) [gone](docs/missing.md) [out](../shared/EVENTS.md)\n"
                    "[bad anchor](docs/there.md#nope) [web](https://example.org) `[code](nowhere.md)`\n",
                    encoding="utf-8")
    problems = link_problems(page, root=tmp_path)
    assert [p.split(": ")[1] for p in problems] == ["docs/missing.md does not exist",
                                                    "../shared/EVENTS.md leads out of the repository (a clone has nothing there)",
                                                    "docs/there.md#nope"]


@pytest.mark.fast
def test_no_page_sends_the_reader_outside_the_repository() -> None:
    """`../shared/` is beside a developer's checkout, not in a clone: the contract ships in docs/."""
    found = [f"{p.relative_to(ROOT)}:{n}" for p in DOCS
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "../shared/" in line]
    assert not found, "points outside the repository: " + ", ".join(found)


@pytest.mark.fast
def test_the_layout_lists_every_layer_folder_once() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- `([\w.]+)/`", section, re.M)
    folders = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert sorted(set(listed) & set(folders)) == folders, f"not in the layout: {sorted(set(folders) - set(listed))}"
    assert len(listed) == len(set(listed)), "a folder listed twice"
