"""Static security scans: bandit on the Python code, checkov on template.yaml; every skip says why, where it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, ROOT, run_tool

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


# checkov on template.yaml. It resolves Conditions with the parameters' defaults, so it scans the template
# as written and as deployed with other front doors and options (the defaults rewritten in a copy).
VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "http-logged": {
        "ApiType": "http",
        "AuthType": "jwt",
        "ModelBucketAccessLogs": '"true"',
        "ReservedConcurrency": "20",
    },
    "public-url": {"ApiType": "url", "AuthType": "none", "ReservedConcurrency": "20"},
}


def with_defaults(template: str, defaults: dict[str, str]) -> str:
    for name, value in defaults.items():
        pattern = re.compile(rf"(\n  {name}:\n(?:    .*\n)*?    Default: )([^\n]*)")
        assert pattern.search(template), f"no parameter {name}"
        template = pattern.sub(lambda match: match.group(1) + value, template, count=1)  # noqa: B023
    return template


def declared_skips() -> dict[str, dict[str, str]]:
    """Resource -> {check id: comment} from each resource's Metadata.checkov.skip."""
    from samtranslator.yaml_helper import yaml_parse

    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    return {
        name: {skip["id"]: skip.get("comment", "") for skip in resource["Metadata"]["checkov"]["skip"]}
        for name, resource in resources.items()
        if "checkov" in resource.get("Metadata", {})
    }


@pytest.fixture(scope="module")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("checkov")
    template = (ROOT / "template.yaml").read_text()
    for variant, defaults in VARIANTS.items():
        (directory / f"{variant}.yaml").write_text(with_defaults(template, defaults))
    result = run_tool(
        str(BIN / "checkov"), "-d", str(directory), "--framework", "cloudformation", "--skip-download", "-o", "json"
    )
    report = json.loads(result.stdout)
    results = report["results"]
    by_file: dict[str, Any] = {variant: {"failed": [], "skipped": []} for variant in VARIANTS}
    for kind, key in (("failed", "failed_checks"), ("skipped", "skipped_checks")):
        for check in results[key]:
            by_file[Path(check["file_path"]).stem][kind].append((check["resource"].split(".")[-1], check["check_id"]))
    return {"summary": report["summary"], "results": by_file}


@pytest.mark.slow
def test_checkov_finds_nothing_unexplained_in_the_template(checkov_reports: dict[str, Any]) -> None:
    summary = checkov_reports["summary"]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] > 3 * 15
    declared = declared_skips()
    for variant, found in checkov_reports["results"].items():
        assert not found["failed"], f"{variant}: decide each in the template (fix it, or skip it with a reason)"
        for resource, check in found["skipped"]:
            assert len(declared[resource][check].split()) >= 5, f"{resource} {check}: say why in one line"


@pytest.mark.slow
def test_every_checkov_skip_in_the_template_is_still_needed(checkov_reports: dict[str, Any]) -> None:
    used = {skip for found in checkov_reports["results"].values() for skip in found["skipped"]}
    declared = {(resource, check) for resource, checks in declared_skips().items() for check in checks}
    assert declared <= used, f"skips no check needs any more: {sorted(declared - used)}"
