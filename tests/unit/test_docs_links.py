"""Every link of the README, the changelog and the pages in docs/ leads somewhere.

A relative link must name a file that exists (relative to the linking file); an ``#anchor``, alone or
after a Markdown file, must be the GitHub slug of a heading of that file. Links inside fenced code
blocks, inline code and HTML comments are not links; ``http(s)://`` and ``mailto:`` targets are not
checked (no network). The checker is tested on a small sample with broken links, so it can fail.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 300

EXTERNAL = ("http://", "https://", "mailto:")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# [text](target) or [text](target "title"); the text may span lines, the target may be in <...>
LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)


def markdown_files() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks, with fenced lines blanked so line numbers stay."""
    out = []
    fence: str | None = None
    for line in text.split("\n"):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            out.append("")
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and not line.strip()[len(match.group(1)):].strip():
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text, lower-case, without characters other than
    letters, digits, spaces, hyphens and underscores, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image: its text
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), text)
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = re.sub(r"(\*{1,3}|_{1,3})(?=\S)(.+?)(?<=\S)\1", r"\2", text)  # emphasis markers
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a Markdown text's headings, duplicates numbered -1, -2, ... as GitHub does."""
    seen: Counter[str] = Counter()
    result = set()
    for line in COMMENT.sub("", prose(text)).split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        anchor = slug if not seen[slug] else f"{slug}-{seen[slug]}"
        seen[slug] += 1
        result.add(anchor)
    return result


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code and comments."""
    text = prose(text)
    text = COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = CODE_SPAN.sub(lambda m: "code" + "\n" * m.group(0).count("\n"), text)
    found = []
    for pattern in (LINK, REFERENCE):
        for match in pattern.finditer(text):
            target = match.group(match.lastindex or 0)
            found.append((text.count("\n", 0, match.start()) + 1, target))
    return sorted(found)


def broken_links(path: Path) -> list[str]:
    """What is wrong with each link of one Markdown file, one line per broken link."""
    errors = []
    anchor_cache: dict[Path, set[str]] = {}
    for line, target in links(path.read_text(encoding="utf-8")):
        if target.lower().startswith(EXTERNAL):
            continue
        where = f"{path.name}:{line}: ({target})"
        if not target:
            errors.append(f"{where} an empty link target")
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not linked.exists():
            errors.append(f"{where} no such file: {linked}")
            continue
        if not anchor:
            continue
        if linked.suffix.lower() != ".md" or not linked.is_file():
            errors.append(f"{where} an anchor into {linked.name}, which is no Markdown file")
            continue
        if linked not in anchor_cache:
            anchor_cache[linked] = anchors(linked.read_text(encoding="utf-8"))
        if unquote(anchor) not in anchor_cache[linked]:
            errors.append(f"{where} no heading of {linked.name} has the anchor #{anchor}")
    return errors


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_leads_somewhere(path: Path) -> None:
    assert path.is_file(), f"{path} is missing"
    errors = broken_links(path)
    assert not errors, "broken links:\n" + "\n".join(errors)


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for _, target in links(README.read_text(encoding="utf-8")) if not target.startswith(EXTERNAL)}
    pages = set(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    assert {page.resolve() for page in pages} <= linked, "docs pages the README does not link"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda path: path.name)
def test_each_page_has_one_title(page: Path) -> None:
    headings = [line for line in prose(page.read_text(encoding="utf-8")).split("\n") if HEADING.match(line)]
    assert headings and headings[0].startswith("# "), f"{page.name} does not start with a # title"
    assert sum(1 for line in headings if line.startswith("# ")) == 1, f"{page.name} has more than one # heading"


@pytest.mark.parametrize(("heading", "slug"), [
    ("How it works", "how-it-works"),
    ('The "InExchange dispatch" page in the Airflow UI', "the-inexchange-dispatch-page-in-the-airflow-ui"),
    ("The chaos run: 100,000 invoices, faults everywhere", "the-chaos-run-100000-invoices-faults-everywhere"),
    ("Reading InExchange's replies: a tolerant reader", "reading-inexchanges-replies-a-tolerant-reader"),
    ("Åtgärder för `in_doubt` och [fel](x.md)", "åtgärder-för-in_doubt-och-fel"),
    ("docker compose (CeleryExecutor)", "docker-compose-celeryexecutor"),
    ("A  -  B", "a-----b"),
])
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "target.md").write_text(
        "# Target\n\n## Åtgärder\n\nText.\n\n## Same\n\n## Same\n\n```\n## Not a heading\n```\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Local\n", encoding="utf-8")
    sample = tmp_path / "sample.md"
    sample.write_text(
        "# Sample\n\n"
        "Good: [a file](target.md), [a heading](target.md#åtgärder), [the second Same](target.md#same-1),\n"
        "[across\nlines](docs/page.md#local), [here](#sample), [the web](https://example.com/x#y),\n"
        "[mail](mailto:someone@example.se), `[in code](nowhere.md)`.\n\n"
        "```bash\n[in a fence](nowhere.md)\n```\n\n"
        "<!-- [in a comment](nowhere.md) -->\n\n"
        "Broken: [no file](missing.md), [no heading](target.md#nope), [no third Same](target.md#same-2),\n"
        "[fenced heading](target.md#not-a-heading), [no local heading](#elsewhere), [no page](docs/none.md#x).\n",
        encoding="utf-8")
    errors = broken_links(sample)
    assert len(errors) == 6, "\n".join(errors)
    for target in ("missing.md", "target.md#nope", "target.md#same-2", "target.md#not-a-heading", "#elsewhere",
                   "docs/none.md#x"):
        assert any(f"({target})" in error for error in errors), (target, errors)
    assert all("sample.md:" in error for error in errors)
    assert sum(error.startswith("sample.md:14:") for error in errors) == 3, errors  # line numbers survive fences
