"""Fenced code blocks of the docs, so tests run what the docs say instead of a copy of it."""

import re
from pathlib import Path

from ml_assets.settings import project_root

DOCS = [project_root() / "README.md", *sorted((project_root() / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Commands quoted inline, e.g. `make clean`; usage synopses with [optional] parts are not.
_INLINE = re.compile(r"`((?:\.venv/bin/|make |ml-assets )[^`\[]*)`")


def code_blocks(path: Path, language: str) -> list[str]:
    """The bodies of `path`'s fenced blocks tagged `language`, in order."""
    return [body for lang, body in _FENCE.findall(path.read_text()) if lang == language]


def commands(path: Path) -> list[str]:
    """Every command line of `path`'s ``bash`` and ``console`` blocks (continuations joined,
    comments and console prompts removed), then its inline commands."""
    lines = []
    for language in ("bash", "console"):
        for block in code_blocks(path, language):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.removeprefix("$ ").split("  #")[0].strip()
                if line and not line.startswith("#"):
                    lines.append(line)
    text = _FENCE.sub("", path.read_text())
    return lines + [" ".join(span.split()) for span in _INLINE.findall(text)]
