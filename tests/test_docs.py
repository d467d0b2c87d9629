"""The documentation holds together: every "docs/<file> §N" citation in the code, the docs and the README
names a file that exists and a section "## N." in it; every repository path and markdown link they
mention exists; every sub-package's docstring lists its modules; nothing refers to a path outside the
repository.

Citation forms read: "docs/theory.md §3", "docs/theory.md §1, §3, §5", "docs/pipelines.md §2–§5" (a
range), and a bare "§N", which inside docs/<file>.md means that file's own section and anywhere else
docs/theory.md (the code's convention: docs/theory.md's preamble)."""
import ast
import re
import subprocess

import pytest

from conftest import ROOT

# "docs/<file>.md" and the sections that follow it (a citation may wrap a line)
CITATION = re.compile(r"docs/(?P<file>[\w.-]+\.md)(?P<sections>(?:\s*(?:,|–|-|and|or)?\s*§[ \t]*\d+)*)")
SECTION_REF = re.compile(r"(?P<sep>–|-)?\s*§[ \t]*(?P<n>\d+)")
BARE_SECTION = re.compile(r"§[ \t]*(\d+)")
HEADING = re.compile(r"^## (\d+)\.", re.MULTILINE)
# a path inside the repository, not the tail of a longer path (a temporary folder's)
REPO_PATH = re.compile(r"(?<![\w/.{-])(?:common|tests|benchmarks|docs)/[\w/.-]*\w\.(?:py|md|html|png|txt)\b")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
# built from pieces so that this file does not name them itself
OUTSIDE = [re.compile(p) for p in (r"SPEC" + r"\.md", r"shared" + r"/SPEC", r"\bSPEC" + r" §", r"/" + r"work/",
                                   r"\.\./" + r"shared", r"farm" + r"-bench")]
BINARY = {".png", ".pdf", ".jpg", ".safetensors", ".whl", ".gz", ".zip", ".pyc"}


def repository_files() -> list:
    """What a commit would hold: tracked files plus untracked ones git does not ignore."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed files cannot be listed")
    return sorted({p for p in listed if (ROOT / p).is_file()})


def text_files() -> dict:
    """{relative path: text} of every repository file that is text."""
    texts = {}
    for path in repository_files():
        if (ROOT / path).suffix in BINARY:
            continue
        try:
            texts[path] = (ROOT / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def cited_sections(sections: str) -> list:
    """The section numbers of one citation's tail: ' §1, §3–§5' → [1, 3, 4, 5]."""
    numbers = []
    for match in SECTION_REF.finditer(sections):
        n = int(match["n"])
        if match["sep"] and numbers:
            numbers += range(numbers[-1] + 1, n + 1)
        else:
            numbers.append(n)
    return numbers


def citations(path: str, text: str) -> list:
    """[(line, cited file, section or None)] of one file: explicit citations, then bare §N."""
    found, covered = [], []
    for match in CITATION.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, "docs/" + match["file"], None))
        found += [(line, "docs/" + match["file"], n) for n in cited_sections(match["sections"])]
        covered.append(match.span())
    own = path if path.startswith("docs/") and path.endswith(".md") else "docs/theory.md"
    for match in BARE_SECTION.finditer(text):
        if not any(start <= match.start() < end for start, end in covered):
            found.append((text.count("\n", 0, match.start()) + 1, own, int(match[1])))
    return found


def sections_of(path) -> set:
    return {int(n) for n in HEADING.findall((ROOT / path).read_text(encoding="utf-8"))}


def test_the_citation_reader_reads_every_form():
    text = ("see docs/theory.md §1, §3–§5 and §7; [docs/pipelines.md §2–§5](docs/pipelines.md).\n"
            "the §3 prediction (docs/results.md) and docs/benchmarks.md\n    §10.")
    assert citations("common/theory/model.py", text) == [
        (1, "docs/theory.md", None), (1, "docs/theory.md", 1), (1, "docs/theory.md", 3), (1, "docs/theory.md", 4),
        (1, "docs/theory.md", 5), (1, "docs/theory.md", 7),
        (1, "docs/pipelines.md", None), (1, "docs/pipelines.md", 2), (1, "docs/pipelines.md", 3),
        (1, "docs/pipelines.md", 4), (1, "docs/pipelines.md", 5), (1, "docs/pipelines.md", None),
        (2, "docs/results.md", None), (2, "docs/benchmarks.md", None), (2, "docs/benchmarks.md", 10),
        (2, "docs/theory.md", 3)]
    # inside a doc, a bare § is the doc's own section
    assert citations("docs/results.md", "as §2 shows") == [(1, "docs/results.md", 2)]
    assert sections_of("docs/theory.md") >= set(range(1, 14))


def test_every_section_citation_resolves():
    broken, explicit = [], 0
    for path, text in text_files().items():
        for line, cited, section in citations(path, text):
            if not (ROOT / cited).is_file():
                broken.append(f"{path}:{line}: {cited} does not exist")
            elif section is not None and section not in sections_of(cited):
                broken.append(f"{path}:{line}: {cited} has no section '## {section}.'")
        explicit += sum(len(cited_sections(match["sections"])) for match in CITATION.finditer(text))
    assert not broken, "\n".join(broken)
    # the citations of the code and docs before the docs were split (89) are all still read
    assert explicit >= 89, explicit


def test_every_repository_path_and_link_mentioned_exists():
    missing = []
    for path, text in text_files().items():
        for match in REPO_PATH.finditer(text):
            if not (ROOT / match[0]).exists():
                missing.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {match[0]}")
        if path.endswith(".md"):
            for match in MARKDOWN_LINK.finditer(text):
                target = match[1].split("#")[0]
                if target and "://" not in target and not ((ROOT / path).parent / target).exists():
                    missing.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: link {match[1]}")
    assert not missing, "\n".join(missing)


def test_nothing_refers_to_a_path_outside_the_repository():
    found = [f"{path}:{text.count(chr(10), 0, m.start()) + 1}: {m[0]}"
             for path, text in text_files().items() for pattern in OUTSIDE for m in pattern.finditer(text)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("package", ["common"] + sorted(str(p.parent.relative_to(ROOT))
                                                    for p in ROOT.glob("common/*/__init__.py")))
def test_each_package_docstring_lists_its_modules(package):
    folder = ROOT / package
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")), clean=False) or ""
    modules = [p.stem if p.suffix == ".py" else p.name for p in sorted(folder.iterdir())
               if (p.suffix == ".py" and p.name != "__init__.py") or p.suffix == ".html"]
    unlisted = [m for m in modules if not re.search(rf"^\s+{re.escape(m)}\s", doc, re.MULTILINE)]
    assert not unlisted, f"{package}/__init__.py's docstring does not list {unlisted}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 180
