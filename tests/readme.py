"""The README's commands as the tests read them: every ```bash block of a section, split into command lines
(continuations joined, `&&` chains split, `# comments` and `[optional parts]` dropped) and into words."""

from __future__ import annotations

import re
import shlex

from cli import REPO

README = REPO / "README.md"


def readme_text() -> str:
    return README.read_text()


def headings() -> list[tuple[str, int, int]]:
    """(heading, start, end) of each heading's own text, up to the next heading of any level; lines in
    fenced code (a ``# comment`` in a block) are not headings."""
    text, found, fenced, offset = readme_text(), [], False, 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            found.append([line.strip(), offset + len(line), len(text)])
            if len(found) > 1:
                found[-2][2] = offset
        offset += len(line)
    return [tuple(entry) for entry in found]


def section(heading: str) -> str:
    """The heading's own text (up to the next heading)."""
    [(start, end)] = [(start, end) for name, start, end in headings() if name == heading]
    return readme_text()[start:end]


def command_lines(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = []
    for line in joined.strip().splitlines():
        line = re.sub(r"\s+#\s.*$", "", line)  # a comment after two or more spaces
        line = re.sub(r"\s*\[[^\]]*\]", "", line)  # an optional part, shown in brackets
        lines += [part.strip() for part in line.split("&&") if part.strip()]
    return lines


def bash_blocks(heading: str | None = None) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section(heading) if heading else readme_text(), re.S)


def commands(heading: str, program: str = "vbench") -> list[list[str]]:
    """The words after ``program`` of each of the section's commands that start with it."""
    found = []
    for block in bash_blocks(heading):
        for line in command_lines(block):
            words = shlex.split(line)
            if words[0] == program:
                found.append(words[1:])
    return found


def headings_with_commands() -> list[str]:
    return [name for name, _, _ in headings() if "```bash" in section(name)]
