"""The contract and the design the code cites are in the repository, and every citation lands.

Code, tests, bench, the C++ core, the README and .ci cite ``docs/contract.md §4.3`` or
``docs/design.md §7.1``. This test reads every text file of the checkout (what git tracks,
plus new files it does not ignore) and checks that:

- each cited ``docs/<name>.md`` exists, and each cited section is a numbered heading there
  (``### 4.3 Short returns``); a list such as ``§4.1, §5.1`` checks every number;
- nothing cites a page outside the repository (the team's notes that the first citations
  pointed at), which a user of the repository cannot read;
- each docs page numbers its sections once, and its relative links resolve.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
THIS = Path(__file__).resolve()

if not (DOCS.is_dir() and (ROOT / "python" / "parajob").is_dir()):
    # .ci/test-wheel runs a copy of tests/ (with README.md) beside no docs/ and no sources.
    pytest.skip(
        "not a source checkout: no docs/ and python/ beside tests/", allow_module_level=True
    )

TEXT_SUFFIXES = {".py", ".pyi", ".md", ".txt", ".cpp", ".hpp", ".h", ".toml", ".yml", ".yaml"}
# A citation: docs/<name>.md, then one or more section numbers (a comment leader or a line
# break may sit between them: "(docs/contract.md\n# §1.3)").
_GAP = r"(?:\s|#|//|\*)*"
CITATION = re.compile(
    rf"docs/([A-Za-z0-9_-]+)\.md((?:{_GAP}(?:,|and|or)?{_GAP}§[0-9]+(?:\.[0-9]+)*)*)"
)
SECTION = re.compile(r"§([0-9]+(?:\.[0-9]+)*)")
HEADING = re.compile(r"^#{1,6}\s+([0-9]+(?:\.[0-9]+)*)\.?\s+\S", re.MULTILINE)
# Citations of pages that live outside the repository.
OUTSIDE = [
    re.compile(r"\b(?:SPEC|DESIGN|STYLE)\.md\b"),
    re.compile(r"\bSPEC\s*§"),
    re.compile(r"\bDESIGN\b"),  # "DESIGN, 'fork first, then threads'"
    re.compile(r"\breference/(?:azure-prs|azure-prs-painpoints|peers|aesthetics)\.md\b"),
    re.compile(r"\.\./shared\b|/work/shared\b"),
]


def _repository_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git cannot list the checkout's files")
    names = {name for name in listed.decode("utf-8", "surrogateescape").split("\0") if name}
    return sorted(ROOT / name for name in names if (ROOT / name).is_file())


def _is_text(path: Path) -> bool:
    return path.suffix in TEXT_SUFFIXES or (path.parent.name == ".ci" and not path.suffix)


def _text_files() -> dict[str, str]:
    texts = {}
    for path in _repository_files():
        if not _is_text(path):
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            texts[path.relative_to(ROOT).as_posix()] = data.decode("utf-8", "replace")
    return texts


def _sections(page: Path) -> list[str]:
    return HEADING.findall(page.read_text(encoding="utf-8"))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def test_the_cited_pages_are_in_the_repository() -> None:
    assert (DOCS / "contract.md").is_file()
    assert (DOCS / "design.md").is_file()


def test_every_cited_section_exists() -> None:
    sections = {page.stem: set(_sections(page)) for page in DOCS.glob("*.md")}
    cited, broken = 0, []
    for name, text in _text_files().items():
        for match in CITATION.finditer(text):
            page, numbers = match.group(1), SECTION.findall(match.group(2))
            where = f"{name}:{_line(text, match.start())}"
            if page not in sections:
                broken.append(f"{where}: docs/{page}.md does not exist")
                continue
            for number in numbers:
                cited += 1
                if number not in sections[page]:
                    broken.append(f"{where}: docs/{page}.md has no section {number}")
    assert not broken, "\n".join(broken)
    assert cited >= 40, f"only {cited} section citations found: is the scan reading the files?"


def test_nothing_cites_a_page_outside_the_repository() -> None:
    found = []
    for name, text in _text_files().items():
        if ROOT / name == THIS:
            continue  # the patterns above
        for pattern in OUTSIDE:
            for match in pattern.finditer(text):
                found.append(f"{name}:{_line(text, match.start())}: {match.group(0)!r}")
    assert not found, "citations of pages that are not in the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("page", ["contract.md", "design.md"])
def test_a_page_numbers_each_section_once(page: str) -> None:
    numbers = _sections(DOCS / page)
    assert numbers, f"docs/{page} has no numbered sections"
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not repeated, f"docs/{page} numbers these sections twice: {repeated}"
    # Subsections sit under their section: "4.3" only after "4".
    tops = {n for n in numbers if "." not in n}
    orphans = [n for n in numbers if "." in n and n.split(".")[0] not in tops]
    assert not orphans, f"docs/{page}: subsections without their section: {orphans}"


@pytest.mark.parametrize("page", ["contract.md", "design.md"])
def test_relative_links_of_a_page_resolve(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text)
    missing = [link for link in links if not (DOCS / link).exists()]
    assert not missing, f"docs/{page} links to missing files: {missing}"
