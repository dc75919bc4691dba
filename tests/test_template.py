"""template.yaml: it lints, and its security promises hold (read-only, scoped IAM; a protected bucket)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
ALLOWED_MANAGED_POLICIES = {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSXRayDaemonWriteAccess"}


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def transformed(**parameters: str) -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation would receive it."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    text = TEMPLATE.read_text()
    text = text.replace("CodeUri: functions/predict/", "CodeUri: s3://artifacts/function.zip")
    text = text.replace("ContentUri: layers/forest/", "ContentUri: s3://artifacts/layer.zip")

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return transform(yaml_parse(text), parameters, NoManagedPolicies())


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return transformed()["Resources"]


@pytest.mark.slow
def test_cfn_lint_passes() -> None:
    result = run_tool("cfn-lint", str(TEMPLATE))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_sam_validate_lint_passes() -> None:
    result = run_tool("sam", "validate", "--lint", "--template-file", str(TEMPLATE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_function_may_only_read_its_models_prefix(resources: dict[str, Any]) -> None:
    role = resources["PredictFunctionRole"]["Properties"]
    managed = {
        arn["Fn::Sub"].rsplit("/", 1)[-1] if isinstance(arn, dict) else arn.rsplit("/", 1)[-1]
        for arn in role.get("ManagedPolicyArns", [])
    }
    assert managed <= ALLOWED_MANAGED_POLICIES  # logs and X-Ray only; nothing that touches S3

    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    signing = [s for s in statements if "Fn::If" in s]
    statements = [s for s in statements if "Fn::If" not in s]
    assert statements, "the function has no S3 read permission"
    [[condition, verify, otherwise]] = [s["Fn::If"] for s in signing]
    assert (condition, otherwise) == ("VerifySignatures", {"Ref": "AWS::NoValue"})
    assert (verify["Action"], verify["Resource"]) == ("kms:Verify", {"Ref": "ModelSigningKeyArn"})
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow"
        assert set(actions) <= {"s3:GetObject", "s3:ListBucket"}, actions
        assert "*" not in str(statement["Resource"]).replace("/*", "")
    get = next(s for s in statements if s["Action"] == "s3:GetObject")
    assert get["Resource"] == {"Fn::Sub": "${ModelBucket.Arn}/${ModelPrefix}/${ModelName}/*"}
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${ModelPrefix}/${ModelName}/*"}}}


def test_model_bucket_is_private_encrypted_versioned_and_tls_only(resources: dict[str, Any]) -> None:
    bucket = resources["ModelBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    [deny] = resources["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_layer_variant_and_snapstart_are_parameters(resources: dict[str, Any]) -> None:
    function = resources["PredictFunction"]["Properties"]
    [layers] = function["Layers"]
    assert layers["Fn::If"][0] == "UseLeanLayer"
    assert function["SnapStart"] == {
        "Fn::If": ["UseSnapStart", {"ApplyOn": "PublishedVersions"}, {"Ref": "AWS::NoValue"}]
    }
    conditions = {resource.get("Condition") for name, resource in resources.items() if "Layer" in name}
    assert conditions == {"FullArm64", "FullX8664", "LeanArm64", "LeanX8664"}


def test_function_settings(resources: dict[str, Any]) -> None:
    function = resources["PredictFunction"]["Properties"]
    assert function["Runtime"] == "python3.13"
    assert function["Timeout"] < 29
    assert function["TracingConfig"] == {"Mode": "Active"}
    variables = function["Environment"]["Variables"]
    assert {
        "MODEL_STORE",
        "MODEL_NAME",
        "MODEL_VERSION",
        "MODEL_ALIAS",
        "MODEL_REFRESH_SECONDS",
        "MAX_BATCH_ROWS",
        "ALLOW_PICKLE",
        "MODEL_SIGNING_KEY_ARN",
    } <= set(variables)
    assert variables["ALLOW_PICKLE"] == {"Ref": "AllowPickle"}


def test_pickle_is_off_by_default_and_needs_the_full_layer() -> None:
    template = transformed()
    assert template["Parameters"]["AllowPickle"]["Default"] == "false"
    rule = template["Rules"]["PickleNeedsTheFullLayer"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "AllowPickle"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "LayerVariant"}, "full"]}


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_api_routes_and_optional_api_key(enabled: str) -> None:
    template = transformed(EnableApiKey=enabled)
    body = template["Resources"]["PredictApi"]["Properties"]["Body"]
    routes = {(path, method) for path, methods in body["paths"].items() for method in methods}
    assert routes == {("/predict", "post"), ("/model", "get"), ("/health", "get")}
    for methods in body["paths"].values():
        for operation in methods.values():
            assert operation["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
            assert operation["security"] == {"Fn::If": ["UseApiKey", [{"api_key": []}], {"Ref": "AWS::NoValue"}]}
    assert template["Resources"]["ApiKey"]["Condition"] == "UseApiKey"
    stage = template["Resources"]["PredictApiStage"]["Properties"]
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
