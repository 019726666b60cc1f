"""The repository stands alone: no reference to design files a clone lacks, no dangling doc link.

Two checks over the repository (git-tracked files plus untracked files git does not ignore):

- no text file outside ``results/`` names the private design documents or their folder (the
  needles are built from pieces, so this file does not name them itself); cite
  ``docs/methods.md`` or ``docs/architecture.md`` instead;
- every relative Markdown link in README.md, docs/, results/README.md and extractors/README.md
  resolves to an existing file or folder, and an ``#anchor`` into a Markdown file (or into the
  same file) names one of its headings, slugged as GitHub does.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NEEDLES = (
    *(stem + ".md" for stem in ("ALGO" + "RITHMS", "ARCHI" + "TECTURE", "ST" + "YLE")),
    "shared" + "/" + "design",
    # a section cited without the file name ("... §4") is as dangling
    *(stem + " " + "\u00a7" for stem in ("ALGO" + "RITHMS", "ARCHI" + "TECTURE")),
)
SKIPPED_TOP = {"results", ".git"}
LINKED_DOCS = ("README.md", "docs", "results/README.md", "extractors/README.md")
# [text](target) or ![alt](target); target ends at whitespace (a title may follow) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, //host
FENCE = re.compile(r"^\s*(```|~~~)")


def repo_files(root: Path = ROOT) -> list[Path]:
    """Tracked files plus untracked, not ignored ones (every file below ``root`` without git)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, check=True,
        ).stdout.decode()
        names = [name for name in out.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts]
    return sorted(root / name for name in names if (root / name).is_file())


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def design_references(paths: list[Path], root: Path = ROOT) -> list[str]:
    """``file:line: needle`` for every mention of a design file outside ``results/``."""
    found = []
    for path in paths:
        if path.relative_to(root).parts[0] in SKIPPED_TOP:
            continue
        text = read_text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            found += [f"{path.relative_to(root)}:{number}: {needle}"
                      for needle in NEEDLES if needle in line]
    return found


def prose_lines(markdown: str) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks."""
    lines = []
    in_fence = False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            lines.append((number, line))
    return lines


def relative_links(markdown: str) -> list[tuple[int, str]]:
    """(line, target) of every relative link (``#anchor`` alone included) outside code."""
    return [(number, target) for number, line in prose_lines(markdown)
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line))
            if not EXTERNAL.match(target)]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2`` ... appended to repeats."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(markdown):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def dangling_links(markdown_files: list[Path], root: Path = ROOT) -> list[str]:
    """``file:line: target`` for every relative link to a missing file or heading."""
    bad = []
    for path in markdown_files:
        for number, target in relative_links(path.read_text(encoding="utf-8")):
            file_part, _, anchor = target.partition("#")
            destination = path.parent / file_part if file_part else path
            if not destination.exists():
                bad.append(f"{path.relative_to(root)}:{number}: {target}")
            elif anchor and destination.suffix == ".md" and anchor not in heading_anchors(
                    destination.read_text(encoding="utf-8")):
                bad.append(f"{path.relative_to(root)}:{number}: {target} (no such heading)")
    return bad


def linked_docs(root: Path = ROOT) -> list[Path]:
    """README.md, docs/**/*.md, results/README.md and extractors/README.md."""
    paths: list[Path] = []
    for name in LINKED_DOCS:
        target = root / name
        paths += sorted(target.rglob("*.md")) if target.is_dir() else [target]
    return [p for p in paths if p.is_file()]


def test_no_reference_to_design_files_a_clone_lacks() -> None:
    found = design_references(repo_files())
    assert not found, (
        "cite docs/methods.md or docs/architecture.md instead of:\n" + "\n".join(found)
    )


def test_every_relative_doc_link_resolves() -> None:
    docs = linked_docs()
    assert ROOT / "docs" / "methods.md" in docs and ROOT / "docs" / "architecture.md" in docs
    bad = dangling_links(docs)
    assert not bad, "links to missing files:\n" + "\n".join(bad)


def test_the_checks_catch_a_reference_and_a_dangling_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "exists.md").write_text("# here\n## Shot groups (many, few)\n## here\n")
    cited = tmp_path / "mod.py"
    cited.write_text(f'"""See {NEEDLES[0]} section 3."""\n')
    history = tmp_path / "results" / "old.json"
    history.write_text(f'{{"note": "{NEEDLES[3]}"}}\n')
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Local\n[ok](../exists.md#here) [web](https://example.org/x.md) [anchor](#local)\n"
        "[gone](missing.md#part) ![img](pics/none.png)\n"
        "```\n[in code](nowhere.md)\n```\n`[inline](nowhere.md)`\n"
        "[ok](../exists.md#shot-groups-many-few) [ok](../exists.md#here-1) [bad](#nowhere)\n"
        "[bad](../exists.md#here-2)\n"
    )
    assert design_references([cited, history, page], tmp_path) == [f"mod.py:1: {NEEDLES[0]}"]
    assert dangling_links([page], tmp_path) == [
        "docs/page.md:3: missing.md#part", "docs/page.md:3: pics/none.png",
        "docs/page.md:8: #nowhere (no such heading)",
        "docs/page.md:9: ../exists.md#here-2 (no such heading)",
    ]
