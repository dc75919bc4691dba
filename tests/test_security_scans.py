"""Static security scans: bandit on the Python code; every skip is explained on its own line."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT
from tests.test_template import BIN, run_tool

PYTHON_SOURCES = ("functions", "training", "local_lambda", "benchmarks")
NOSEC = re.compile(r"#\s*nosec\b(?P<checks>.*)$")


def explained(lines: list[str], index: int) -> bool:
    """`code  # why it is safe  # nosec B603`, or the reason as a comment on the line before.

    The reason comes before `nosec`: bandit reads every word after it as a check id.
    """
    match = NOSEC.search(lines[index])
    if match is None or not re.fullmatch(r"\s*B\d{3}(\s*,\s*B\d{3})*\s*", match.group("checks")):
        return False  # a bare `# nosec` would silence every check on the line
    before = lines[index][: match.start()]
    reason = before.split("#", 1)[1].strip() if "#" in before else ""
    return bool(reason) or (index > 0 and lines[index - 1].strip().startswith("#"))


@pytest.mark.slow
def test_bandit_finds_nothing_in_the_python_code() -> None:
    result = run_tool(str(BIN / "bandit"), "-c", "pyproject.toml", "-r", *PYTHON_SOURCES, "-f", "json", "-q")
    report = json.loads(result.stdout)
    findings = [
        f"{issue['filename']}:{issue['line_number']} {issue['test_id']} {issue['issue_text']}"
        for issue in report["results"]
    ]
    assert not findings, "\n".join(findings)
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned the code
    assert not report["errors"], report["errors"]


def test_every_bandit_skip_names_its_check_and_says_why() -> None:
    unexplained = []
    for source in PYTHON_SOURCES:
        for path in (ROOT / source).rglob("*.py"):
            lines = path.read_text().splitlines()
            for index, line in enumerate(lines):
                if "nosec" in line and not explained(lines, index):
                    unexplained.append(f"{path.relative_to(ROOT)}:{index + 1}: {line.strip()}")
    assert not unexplained, "write `# <why it is safe>  # nosec BXXX`:\n" + "\n".join(unexplained)


@pytest.mark.parametrize(
    ("lines", "ok"),
    [
        (["import subprocess  # fixed commands only  # nosec B404"], True),
        (["# the URL is always loopback", "urlopen(url)  # nosec B310"], True),
        (["urlopen(url)  # nosec B310"], False),  # no reason
        (["urlopen(url)  # loopback  # nosec"], False),  # silences every check
        (["urlopen(url)  # nosec B310 loopback only"], False),  # bandit would read "loopback" as a check
    ],
)
def test_the_skip_rule_itself(lines: list[str], ok: bool) -> None:
    assert explained(lines, len(lines) - 1) is ok
