"""Every shell command in the README and docs/ still matches the code it names.

Commands that start servers or take minutes are run for real elsewhere: `make test` by
`.ci/run`; `ml-assets run` by the worked-example doc test, `ml-assets dev` by the live tests,
`serve` by test_predictions, `mlflow-ui` by test_mlflow_ui; the benchmarks by test_benchmarks.
Here each one is checked against the current CLI, Makefile and scripts, so a renamed flag or
target fails the suite instead of a newcomer.
"""

import re
import subprocess

import pytest

from ml_assets.cli import build_parser
from ml_assets.settings import project_root
from ml_assets_tests.docs.markdown import DOCS, commands

ROOT = project_root()
# Programs the docs use that are not ours: the shell's, Databricks', curl's.
OTHER_PROGRAMS = {"export", "mkdir", "cp", "curl", "databricks", "apt-get", "git", "cd"}
ALL_COMMANDS = [(doc.relative_to(ROOT).as_posix(), line) for doc in DOCS for line in commands(doc)]


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.MULTILINE))


def _expanded_argv(line: str, program: str) -> list[str]:
    """The arguments after `program`, expanded by bash exactly as a user's shell would."""
    rest = line.split(program, 1)[1]
    out = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {rest}"], capture_output=True, text=True, check=True
    ).stdout
    return out.split("\0")[:-1]


def test_the_docs_have_commands_to_check():
    programs = {line.split()[0] for _, line in ALL_COMMANDS}
    assert {"make", ".venv/bin/ml-assets"} <= programs


@pytest.mark.parametrize(("doc", "line"), ALL_COMMANDS)
def test_doc_command_matches_the_code(doc, line):
    program = line.split()[0]
    if program == "make":
        targets = {word for word in line.split()[1:] if "=" not in word}
        assert targets <= _make_targets(), f"{doc}: {line!r} names a target the Makefile lacks"
    elif program.endswith("ml-assets"):
        argv = _expanded_argv(line, program)
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{doc}: {line!r} is not accepted by the ml-assets CLI")
    elif program.endswith("python") and line.split()[1].startswith("benchmarks/"):
        script = ROOT / line.split()[1]
        assert script.is_file(), f"{doc}: {line!r} names a missing script"
        usage = subprocess.run(
            [program.replace(".venv/bin/", str(ROOT / ".venv/bin") + "/"), str(script), "--help"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for flag in re.findall(r"(--[\w-]+)", line):
            assert flag in usage, f"{doc}: {line!r} uses {flag}, which {script.name} lacks"
    elif program.endswith("python") and line.split()[1] == "-c":
        assert doc == "docs/bring_your_own_data.md", "run only where a test executes it"
    else:
        assert program in OTHER_PROGRAMS, f"{doc}: {line!r}: no test covers {program!r}"
