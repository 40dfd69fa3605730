"""README.md is the front page and docs/ the reference: links resolve, and printed commands exist.

The SQL printed in them runs in pipeline/test_datasets.py, the settings table is checked in
test_settings.py.
"""

import re
from importlib.util import find_spec
from pathlib import Path

import click
import pytest

from amp_personalize.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Written on another branch; the front page and docs/README.md link to it already. Until it is
# merged its links are let through, and once the file exists they are checked like any other.
NOT_YET_WRITTEN: set[Path] = set()


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def fenced_blocks(text: str, lang: str = r"\w*") -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def prose(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def code_spans(text: str) -> list[str]:
    """Inline code, a span broken over two lines read as one line."""
    return [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose(text))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", prose(page.read_text()), re.M)}


def test_the_front_page_stays_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines: reference material belongs in docs/"


def test_every_relative_link_resolves_to_a_file_and_anchor():
    checked = 0
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if linked in NOT_YET_WRITTEN and not linked.exists():
                continue
            assert linked.exists(), f"{name(page)} links to {target}: no such file"
            if anchor:
                assert anchor in anchors(linked), f"{name(page)} links to {target}: no such heading"
            checked += 1
    assert checked > 30


def test_every_docs_page_is_linked_from_the_front_page_or_the_index():
    linked = set()
    for page in (ROOT / "README.md", ROOT / "docs" / "README.md"):
        linked |= {(page.parent / t.split("#")[0]).resolve() for t in re.findall(r"\]\(([^)#\s]+)", page.read_text())}
    assert not [name(p) for p in PAGES if p.resolve() not in linked and p.name != "README.md"]


def invocations() -> list[tuple[str, str]]:
    """(page, words after `amp-personalize`) for every command printed in a code block or span."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for code in [line for block in fenced_blocks(text) for line in block.splitlines()] + code_spans(text):
            for rest in re.findall(r"(?:^|[\s(])(?:\.venv/bin/)?amp-personalize\s+([^|;&#]+)", code):
                found.append((name(page), rest))
    return found


def command_for(words: list[str]) -> click.Command:
    command: click.Command = main
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
    return command


def options_of(command: click.Command) -> set[str]:
    """A command's options a user sees in --help (hidden ones are for the product's own use)."""
    return {opt for p in command.params if not getattr(p, "hidden", False)
            for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")} | {"--help"}


def test_every_printed_amp_personalize_command_and_option_exists():
    printed = invocations()
    assert len(printed) > 20
    for page, rest in printed:
        words = rest.split()
        assert words[0] in main.commands, f"{page}: `amp-personalize {rest}`: no command {words[0]!r}"
        command = command_for(words)
        if isinstance(command, click.Group):
            pytest.fail(f"{page}: `amp-personalize {rest}`: {words[0]} needs a subcommand")
        for option in re.findall(r"--[\w-]+", rest):
            assert option in options_of(command), f"{page}: `amp-personalize {rest}`: no option {option}"


def test_the_commands_page_names_every_command_and_option():
    text = (ROOT / "docs" / "commands.md").read_text()

    def walk(command: click.Command, path: list[str]):
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                yield from walk(sub, [*path, sub_name])
        else:
            yield " ".join(path), command

    for path, command in walk(main, []):
        assert f"`amp-personalize {path}" in text or f"`{path}`" in text, f"docs/commands.md does not name {path}"
        missing = options_of(command) - {"--help"} - set(re.findall(r"--[\w-]+", text))
        assert not missing, f"docs/commands.md does not name {path}'s {sorted(missing)}"


def test_shell_examples_run_amp_personalize_from_the_venv_a_fresh_clone_has():
    """`make` installs into .venv: a bare `amp-personalize` works only with it activated."""
    for page in PAGES:
        for block in fenced_blocks(page.read_text(), "bash"):
            for line in block.splitlines():
                command = line.split("#", 1)[0]
                for m in re.finditer(r"(\S*)amp-personalize\s", command):
                    assert m.group(1).endswith(".venv/bin/"), f"{name(page)}: {line.strip()}"


def test_printed_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for page in PAGES:
        text = page.read_text()
        for code in [*fenced_blocks(text), *code_spans(text)]:
            for target in re.findall(r"(?:^|[\s(])make (\w+)", code, re.M):
                assert target in targets, f"{name(page)}: `make {target}` is not a Makefile target"


def test_printed_paths_and_modules_exist():
    for page in PAGES:
        for span in code_spans(page.read_text()):
            if re.fullmatch(r"(amp_personalize|amp_personalize_tests|benchmarks|docs)/[\w./-]*\w", span):
                assert (ROOT / span).exists(), f"{name(page)}: `{span}` does not exist"
            elif re.fullmatch(r"amp_personalize(\.\w+)+", span):
                assert find_spec(span), f"{name(page)}: module `{span}` does not exist"
