"""The README stays one screen and its links resolve; the CLI reference page is current; every
`intakegate ...` command written in the README and the docs names commands and options the CLI
has.

`make test` also builds the docs site with `mkdocs build --strict` (broken links, anchors and
pages left out of the nav fail there); these checks cover what mkdocs does not see.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
GENERATOR = ROOT / "docs" / "gen_cli_reference.py"
README_MAX_LINES = 250
# [text](target) and ![alt](target), with an optional "title"; reference links are not used.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
REGENERATE = "`.venv/bin/python docs/gen_cli_reference.py`"
# Options that made committed figures and have since left the CLI: the pages quote the command
# as it was run. Remove an entry when the figures it made are rerun.
RETIRED_OPTIONS = {("bench", "--hand-built-from")}
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")  # may wrap, not across paragraphs
OPTION = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*")


def test_readme_fits_one_screen() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move the detail to a "
        "page under docs/ and link it")


def test_readme_relative_links_point_to_files() -> None:
    text = README.read_text(encoding="utf-8")
    targets = LINK.findall(text)
    assert targets, "no links found in README.md: the link pattern is stale"
    missing = []
    for target in targets:
        if SCHEME.match(target) or target.startswith("#"):
            continue  # a URL or an anchor in the README itself
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (ROOT / path).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_cli_reference_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "cli.md"
    done = subprocess.run([sys.executable, str(GENERATOR), "--output", str(fresh)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert fresh.read_text(encoding="utf-8") == CLI_PAGE.read_text(encoding="utf-8"), (
        f"docs/reference/cli.md is stale: the CLI changed. Regenerate it with {REGENERATE} "
        "and commit the result")


def _documented_pages() -> list[Path]:
    pages = [README, *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in pages if p != CLI_PAGE]


def _command_lines(text: str) -> list[str]:
    """`intakegate ...` invocations: in fenced blocks (one per line, continuations joined,
    after a pipe too) and in inline code spans."""
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0]
            for part in line.split("|"):
                found += re.findall(r"(?:^|\s)(?:\S*/)?(intakegate\s.*)$", part.strip())
    for span in CODE_SPAN.findall(FENCE.sub("", text)):
        found += re.findall(r"^(?:\S*/)?(intakegate\s.*)$", " ".join(span.split()))
    return found


def _check(line: str, cli: dict, problems: list[str], where: str) -> None:
    words = [w.strip("[]()") for w in line.split()[1:]]
    path = ""
    for word in words:
        alternatives = word.split("|") if "|" in word else [word]
        if all(a in cli[path]["commands"] for a in alternatives):
            if len(alternatives) > 1:
                return  # `bundles list|path|...`: each one exists
            path = f"{path} {word}".strip()
        elif not word.startswith("-") and cli[path]["commands"]:  # groups take no arguments
            missing = f"{path} {word}".strip()
            problems.append(f"{where}: `{line}`: no command `intakegate {missing}`")
            return
        else:
            break
    for word in words:
        name = OPTION.match(word)
        if not word.startswith("-") or name is None:
            continue
        option = name.group(0)
        if option not in cli[path]["options"] and (path, option) not in RETIRED_OPTIONS:
            problems.append(f"{where}: `{line}`: `intakegate {path}` has no option {option}")


@pytest.fixture(scope="module")
def cli_options() -> dict:
    done = subprocess.run([sys.executable, str(GENERATOR), "--options-json"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_documented_commands_exist(cli_options: dict) -> None:
    problems: list[str] = []
    lines = 0
    for page in _documented_pages():
        for line in _command_lines(page.read_text(encoding="utf-8")):
            lines += 1
            _check(line, cli_options, problems, str(page.relative_to(ROOT)))
    assert lines > 50, f"only {lines} command lines found: the patterns are stale"
    assert not problems, "\n".join(problems)
