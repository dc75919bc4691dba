"""template.yaml: it lints, and its security promises hold (read-only, scoped IAM; a protected bucket)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, ROOT, run_tool

TEMPLATE = ROOT / "template.yaml"
ALLOWED_MANAGED_POLICIES = {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSXRayDaemonWriteAccess"}
__all__ = ["BIN", "run_tool"]  # imported from here by other test modules


def transformed(**parameters: str) -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation would receive it."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    text = TEMPLATE.read_text()
    text = text.replace("CodeUri: functions/predict/", "CodeUri: s3://artifacts/function.zip")
    text = text.replace("CodeUri: functions/monitor/", "CodeUri: s3://artifacts/monitor.zip")
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


MODEL_FILES = [
    {"Fn::Sub": f"${{ModelBucket.Arn}}/${{ModelPrefix}}/${{ModelName}}/{part}/*"} for part in ("versions", "aliases")
]


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
    optional = {condition: (granted, otherwise) for condition, granted, otherwise in (s["Fn::If"] for s in signing)}
    assert set(optional) == {"VerifySignatures", "HasBucketKey"}
    verify, otherwise = optional["VerifySignatures"]
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert (verify["Action"], verify["Resource"]) == ("kms:Verify", {"Ref": "ModelSigningKeyArn"})
    decrypt, otherwise = optional["HasBucketKey"]
    assert (decrypt["Action"], decrypt["Resource"], otherwise) == (
        "kms:Decrypt",
        {"Ref": "BucketKmsKeyArn"},
        {"Ref": "AWS::NoValue"},
    )
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow"
        assert set(actions) <= {"s3:GetObject", "s3:ListBucket"}, actions
        assert "*" not in str(statement["Resource"]).replace("/*", "")
    get = next(s for s in statements if s["Action"] == "s3:GetObject")
    assert get["Resource"] == MODEL_FILES  # not the captured rows, labels or reports beside them
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
        "CAPTURE_SAMPLE_RATE",
        "CAPTURE_MAX_ROWS",
    } <= set(variables)
    assert variables["ALLOW_PICKLE"] == {"Ref": "AllowPickle"}
    assert variables["CAPTURE_SAMPLE_RATE"] == {"Ref": "CaptureSampleRate"}
    assert transformed()["Parameters"]["CaptureSampleRate"]["Default"] == 0  # nothing captured unless asked


def test_pickle_is_off_by_default_and_needs_the_full_layer() -> None:
    template = transformed()
    assert template["Parameters"]["AllowPickle"]["Default"] == "false"
    rule = template["Rules"]["PickleNeedsTheFullLayer"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "AllowPickle"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "LayerVariant"}, "full"]}


def test_rest_api_sends_every_route_to_the_function() -> None:
    template = transformed()
    body = template["Resources"]["PredictApi"]["Properties"]["Body"]
    parameters = {"AuthType": "none"}
    paths = without_no_value(evaluate(template, body["paths"], parameters))
    routes = {(path, method) for path, methods in paths.items() for method in methods}
    proxy = "x-amazon-apigateway-any-method"
    assert routes == {("/", proxy), ("/", "options"), ("/{proxy+}", proxy), ("/{proxy+}", "options")}
    for methods in paths.values():
        for operation in methods.values():
            assert operation["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
            assert "security" not in operation
    stage = template["Resources"]["PredictApiStage"]["Properties"]
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}


def without_no_value(value: Any) -> Any:
    """An evaluated expression as CloudFormation sends it: keys and items set to AWS::NoValue removed."""
    no_value = {"Ref": "AWS::NoValue"}
    if isinstance(value, dict):
        return {key: without_no_value(item) for key, item in value.items() if item != no_value}
    if isinstance(value, list):
        return [without_no_value(item) for item in value if item != no_value]
    return value


# Front doors: which resources exist for each ApiType, by evaluating the template's conditions.

FRONT_DOOR_RESOURCES = {
    "rest": {"PredictApi", "RestApiInvokesFunction"},
    "http": {"PredictHttpApi", "HttpApiInvokesFunction"},
    "url": {"PredictFunctionUrl"},
}
# How each front door's URL names it in the outputs.
FRONT_DOOR_URLS = {"rest": "${PredictApi}", "http": "${PredictHttpApi}", "url": "PredictFunctionUrl"}
NO_VALUE = {"Ref": "AWS::NoValue"}


def evaluate(template: dict[str, Any], expression: Any, parameters: dict[str, Any]) -> Any:
    """`expression` under `parameters`: conditions and parameter references resolved, `Fn::If` branches
    chosen; what a deployment alone knows (resources, Sub, GetAtt) is left as it is."""
    if isinstance(expression, list):
        return [evaluate(template, item, parameters) for item in expression]
    if not isinstance(expression, dict):
        return expression
    if len(expression) != 1:
        return {key: evaluate(template, value, parameters) for key, value in expression.items()}
    [(function, argument)] = expression.items()
    if function == "Ref" and argument in template["Parameters"]:
        if argument in parameters:
            return parameters[argument]
        default = template["Parameters"][argument].get("Default", "")
        return default.split(",") if template["Parameters"][argument]["Type"] == "CommaDelimitedList" else default
    if function == "Condition":
        return evaluate(template, template["Conditions"][argument], parameters)
    if function == "Fn::If":
        condition, when_true, when_false = argument
        return evaluate(
            template, when_true if evaluate(template, {"Condition": condition}, parameters) else when_false, parameters
        )
    values = evaluate(template, argument, parameters)
    operations = {
        "Fn::Equals": lambda: values[0] == values[1],
        "Fn::And": lambda: all(values),
        "Fn::Not": lambda: not values[0],
        "Fn::Join": lambda: values[0].join(values[1]),
    }
    return operations[function]() if function in operations else {function: values}


def created(template: dict[str, Any], parameters: dict[str, Any]) -> set[str]:
    return {
        name
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or evaluate(template, {"Condition": resource["Condition"]}, parameters)
    }


@pytest.mark.parametrize("api_type", ["rest", "http", "url"])
def test_exactly_one_front_door_exists(api_type: str) -> None:
    template = transformed(ApiType=api_type)
    parameters = {"ApiType": api_type}
    resources = created(template, parameters)
    for door, names in FRONT_DOOR_RESOURCES.items():
        assert resources & names == (names if door == api_type else set()), door
    for output in ("ApiUrl", "PredictUrl"):
        url = json.dumps(evaluate(template, template["Outputs"][output]["Value"], parameters))
        assert [door for door, name in FRONT_DOOR_URLS.items() if name in url] == [api_type], output


def test_every_front_door_invokes_the_published_alias() -> None:
    resources = transformed()["Resources"]
    alias = {"Ref": "PredictFunctionAliasserving"}
    assert resources["PredictFunctionUrl"]["Properties"]["TargetFunctionArn"] == alias
    for name in ("RestApiInvokesFunction", "HttpApiInvokesFunction"):
        permission = resources[name]["Properties"]
        assert (permission["FunctionName"], permission["Principal"]) == (alias, "apigateway.amazonaws.com")
        assert permission["SourceArn"]["Fn::Sub"].startswith("arn:${AWS::Partition}:execute-api:")
    http_route = resources["PredictHttpApi"]["Properties"]["Body"]["paths"]["$default"]
    integration = http_route["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
    assert integration["payloadFormatVersion"] == "2.0"
    assert integration["uri"]["Fn::Sub"][1] == {"Alias": alias}


@pytest.mark.parametrize(
    ("api_type", "origins"),
    [
        ("rest", ""),
        ("rest", "https://app.example.com,http://localhost:5173"),
        ("http", ""),
        ("http", "https://app.example.com"),
        ("url", ""),
        ("url", "https://app.example.com,http://localhost:5173"),
    ],
)
def test_cors_allows_no_origin_by_default_and_lives_in_one_place_per_front_door(api_type: str, origins: str) -> None:
    """The REST API leaves CORS to the function; the HTTP API and the function URL answer it natively."""
    parameters = {"ApiType": api_type, "CorsAllowOrigins": origins.split(",")}
    template = transformed(ApiType=api_type, CorsAllowOrigins=origins)
    resources = template["Resources"]
    variables = resources["PredictFunction"]["Properties"]["Environment"]["Variables"]
    function_cors = evaluate(template, variables["CORS_ALLOW_ORIGINS"], parameters)
    http_cors = evaluate(
        template, resources["PredictHttpApi"]["Properties"]["Body"]["x-amazon-apigateway-cors"], parameters
    )
    url_cors = evaluate(template, resources["PredictFunctionUrl"]["Properties"]["Cors"], parameters)
    assert function_cors == (origins if api_type == "rest" else "")
    if origins:
        assert http_cors["allowOrigins"] == url_cors["AllowOrigins"] == origins.split(",")
        assert "OPTIONS" not in url_cors["AllowMethods"]  # a function URL answers preflights itself (and refuses it)
    else:
        assert http_cors == url_cors == NO_VALUE
    assert template["Parameters"]["CorsAllowOrigins"]["Default"] == ""


# Capture, the monitor, alarms and the dashboard (issue 11).


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize(("stream", "directory"), [("CaptureStream", "captures"), ("LabelStream", "labels")])
def test_firehose_writes_the_store_layout_the_monitor_reads(
    resources: dict[str, Any], s3_store: Any, stream: str, directory: str
) -> None:
    import gzip
    from datetime import UTC, datetime, timedelta

    destination = resources[stream]["Properties"]["ExtendedS3DestinationConfiguration"]
    assert destination["CompressionFormat"] == "GZIP" and destination["FileExtension"] == ".jsonl.gz"
    processors = [processor["Type"] for processor in destination["ProcessingConfiguration"]["Processors"]]
    assert processors == ["Decompression", "CloudWatchLogProcessing", "AppendDelimiterToRecord"]
    # The key Firehose would write for a record arriving now, in the test store (prefix "models", model "iris").
    now = datetime.now(UTC)
    prefix = destination["Prefix"]["Fn::Sub"].replace("${ModelPrefix}", "models").replace("${ModelName}", "iris")
    for expression, value in (("yyyy", f"{now:%Y}"), ("MM", f"{now:%m}"), ("dd", f"{now:%d}"), ("HH", f"{now:%H}")):
        prefix = prefix.replace(f"!{{timestamp:{expression}}}", value)
    assert "!{" not in prefix and "${" not in prefix
    line = b'{"kind": "label", "row_id": "a", "label": "setosa", "time": "2026-12-01T10:00:00.000Z"}'
    s3_store._create(f"{prefix.removeprefix('models/')}lambda-forest-1-x.jsonl.gz", gzip.compress(line + b"\n"))
    [key] = s3_store.list_records("iris", directory, now - timedelta(hours=1), now)
    assert s3_store.read_records(key) == line + b"\n"
    errors = destination["ErrorOutputPrefix"]["Fn::Sub"]
    assert f"/{directory}/" not in errors.split("${ModelName}/", 1)[1].split("record-errors/", 1)[0]


def test_subscription_filters_route_each_kind_to_its_stream(resources: dict[str, Any]) -> None:
    from lambda_forest.capture import FILTER_PATTERNS

    for kind, name, stream in (
        ("prediction", "CaptureSubscription", "CaptureStream"),
        ("label", "LabelSubscription", "LabelStream"),
    ):
        properties = resources[name]["Properties"]
        assert properties["FilterPattern"] == FILTER_PATTERNS[kind]
        assert properties["LogGroupName"] == {"Ref": "PredictFunctionLogs"}
        assert properties["DestinationArn"] == {"Fn::GetAtt": [stream, "Arn"]}


def test_record_roles_may_only_move_records(resources: dict[str, Any]) -> None:
    delivery = s3_statements(resources["RecordDeliveryRole"])
    writes = next(s for s in delivery if "s3:PutObject" in as_list(s["Action"]))
    assert set(as_list(writes["Action"])) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert {resource["Fn::Sub"].rsplit("/", 2)[-2] for resource in writes["Resource"]} == {
        "captures",
        "labels",
        "record-errors",
    }
    actions = {action for s in delivery for action in as_list(s["Action"])}
    assert not {action for action in actions if action.endswith("*") or action in ("s3:GetObject", "s3:DeleteObject")}
    [forward] = statements(resources["LogsToFirehoseRole"])
    assert set(forward["Action"]) == {"firehose:PutRecord", "firehose:PutRecordBatch"}
    assert forward["Resource"] == [{"Fn::GetAtt": ["CaptureStream", "Arn"]}, {"Fn::GetAtt": ["LabelStream", "Arn"]}]
    trust = resources["LogsToFirehoseRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "logs.amazonaws.com"} and "aws:SourceArn" in str(trust["Condition"])


def test_monitor_runs_on_a_schedule_reads_its_model_and_writes_only_reports(resources: dict[str, Any]) -> None:
    monitor = resources["MonitorFunction"]["Properties"]
    assert monitor["Handler"] == "monitor.lambda_handler" and monitor["Timeout"] <= 900
    assert monitor["Layers"] == resources["PredictFunction"]["Properties"]["Layers"]  # numpy and Powertools only
    rule = resources["MonitorFunctionSchedule"]
    assert rule["Type"] == "AWS::Events::Rule"
    assert rule["Properties"]["ScheduleExpression"] == {"Ref": "MonitorSchedule"}
    assert transformed()["Parameters"]["MonitorSchedule"]["Default"] == "rate(1 day)"
    granted = {(str(s["Action"]), str(s["Resource"])) for s in s3_statements(resources["MonitorFunctionRole"])}
    model = "${ModelBucket.Arn}/${ModelPrefix}/${ModelName}"
    readable = ["versions/*/manifest.json", "aliases/*", "captures/*", "labels/*"]  # not model.joblib or forest.npz
    assert granted == {
        ("s3:GetObject", str([{"Fn::Sub": f"{model}/{part}"} for part in readable])),
        ("s3:ListBucket", str({"Fn::GetAtt": ["ModelBucket", "Arn"]})),
        ("s3:PutObject", str({"Fn::Sub": "${ModelBucket.Arn}/${ModelPrefix}/${ModelName}/reports/*"})),
        (str(["kms:Decrypt", "kms:GenerateDataKey"]), str({"Ref": "BucketKmsKeyArn"})),  # with BucketKmsKeyArn
    }


EXPECTED_ALARMS = {
    "RestApiServerErrorRateAlarm": ("UseRestApi", 0.01),
    "HttpApiServerErrorRateAlarm": ("UseHttpApi", 0.01),
    "FunctionUrlServerErrorRateAlarm": ("UseFunctionUrl", 0.01),
    "PredictLatencyAlarm": (None, None),
    "PredictErrorsAlarm": (None, 1),
    "PredictThrottlesAlarm": (None, 1),
    "ModelUnavailableAlarm": (None, 1),
    "DriftAlarm": (None, 2),
    "QualityAlarm": (None, 2),
    "MonitorErrorsAlarm": (None, 1),
}
# The 5XX metrics (errors, requests) of each front door.
DOOR_METRICS = {
    "RestApiServerErrorRateAlarm": ("AWS/ApiGateway", "5XXError", "Count"),
    "HttpApiServerErrorRateAlarm": ("AWS/ApiGateway", "5xx", "Count"),
    "FunctionUrlServerErrorRateAlarm": ("AWS/Lambda", "Url5xxCount", "UrlRequestCount"),
}


def test_alarms_watch_what_the_issue_names_and_notify_the_topic(resources: dict[str, Any]) -> None:
    alarms = {name: r for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == set(EXPECTED_ALARMS)
    for name, (condition, threshold) in EXPECTED_ALARMS.items():
        alarm = alarms[name]["Properties"]
        assert alarms[name].get("Condition") == condition
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
        if threshold is not None:
            assert alarm["Threshold"] == threshold
    for name, (namespace, errors, requests) in DOOR_METRICS.items():
        metrics = {query["Id"]: query for query in alarms[name]["Properties"]["Metrics"]}
        assert metrics["rate"]["Expression"] == "errors / requests" and metrics["rate"]["ReturnData"] is True
        assert metrics["errors"]["MetricStat"]["Metric"]["Namespace"] == namespace
        assert metrics["errors"]["MetricStat"]["Metric"]["MetricName"] == errors
        assert metrics["requests"]["MetricStat"]["Metric"]["MetricName"] == requests
    timeout_ms = resources["PredictFunction"]["Properties"]["Timeout"] * 1000
    latency = alarms["PredictLatencyAlarm"]["Properties"]
    assert latency["ExtendedStatistic"] == "p99" and 0.7 * timeout_ms <= latency["Threshold"] < timeout_ms
    [query] = alarms["ModelUnavailableAlarm"]["Properties"]["Metrics"]
    assert "SUM(ModelUnavailable)" in query["Expression"] and "reason" in query["Expression"]
    # The monitor publishes its statuses with these dimensions (functions/monitor/monitor.py).
    drift_alarm = alarms["DriftAlarm"]["Properties"]
    assert drift_alarm["MetricName"] == "DriftStatus"
    assert {d["Name"] for d in drift_alarm["Dimensions"]} == {"model", "service"}


@pytest.mark.parametrize("api_type", ["rest", "http", "url"])
def test_exactly_one_server_error_alarm_follows_the_front_door(api_type: str) -> None:
    template = transformed(ApiType=api_type)
    alarms = {name for name in created(template, {"ApiType": api_type}) if name.endswith("ServerErrorRateAlarm")}
    assert len(alarms) == 1 and DOOR_METRICS.keys() >= alarms
    assert (
        EXPECTED_ALARMS[alarms.pop()][0]
        == {"rest": "UseRestApi", "http": "UseHttpApi", "url": "UseFunctionUrl"}[api_type]
    )


@pytest.mark.parametrize("email", ["", "ops@example.com"])
def test_alarm_email_is_optional(email: str) -> None:
    template = transformed(AlarmEmail=email)
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert ("AlarmEmailSubscription" in created(template, {"AlarmEmail": email})) == bool(email)


DOOR_ALARMS = {
    "rest": "RestApiServerErrorRateAlarm",
    "http": "HttpApiServerErrorRateAlarm",
    "url": "FunctionUrlServerErrorRateAlarm",
}


@pytest.mark.parametrize("api_type", ["rest", "http", "url"])
def test_dashboard_is_valid_json_with_every_panel(api_type: str) -> None:
    import re

    parameters = {"ApiType": api_type}
    template = transformed(ApiType=api_type)
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    separator, alarms = variables.pop("Alarms")["Fn::Join"]
    texts = {name: evaluate(template, value, parameters)["Fn::Sub"] for name, value in variables.items()}
    texts["Alarms"] = separator.join(evaluate(template, alarm, parameters)["Fn::Sub"] for alarm in alarms)
    for name, text in texts.items():
        body = body.replace("${" + name + "}", text)
    body = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(body)["widgets"]
    titles = " | ".join(widget["properties"]["title"] for widget in widgets)
    for panel in ("Traffic", "Latency", "Errors", "Rows per request", "drift per feature", "Live quality", "Alarms"):
        assert panel in titles
    _, errors, requests = DOOR_METRICS[DOOR_ALARMS[api_type]]
    assert f'"{errors}"' in body and f'"{requests}"' in body and DOOR_ALARMS[api_type] in texts["Alarms"]


@pytest.mark.parametrize("api_type", ["rest", "http"])
def test_api_access_logs_are_json_lines_in_a_retained_log_group(api_type: str) -> None:
    template = transformed(ApiType=api_type)
    resources = template["Resources"]
    if api_type == "rest":
        setting = resources["PredictApiStage"]["Properties"]["AccessLogSetting"]
        assert {"ApiGatewayAccount", "ApiGatewayLogsRole"} <= created(template, {"ApiType": "rest"})
    else:
        setting = resources["PredictHttpApiStage"]["Properties"]["AccessLogSettings"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    line = json.loads(setting["Format"])
    assert {"request_id", "ip", "caller", "principal", "status", "latency_ms"} <= set(line)
    logs = resources["ApiAccessLogs"]["Properties"]
    assert logs["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert logs["KmsKeyId"] == {"Fn::If": ["HasLogsKey", {"Ref": "LogsKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}
    assert "ApiAccessLogs" not in created(template, {"ApiType": "url"})


def test_reserved_concurrency_and_customer_keys_are_parameters() -> None:
    template = transformed()
    resources = template["Resources"]
    function = resources["PredictFunction"]["Properties"]
    reserved = function["ReservedConcurrentExecutions"]
    assert evaluate(template, reserved, {}) == {"Ref": "AWS::NoValue"}  # 0 by default: nothing reserved
    assert evaluate(template, reserved, {"ReservedConcurrency": 25}) == 25
    encryption = resources["ModelBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    by_default = evaluate(template, encryption["ServerSideEncryptionByDefault"], {})
    assert by_default == {"SSEAlgorithm": "AES256"}
    key = "arn:aws:kms:us-east-1:123456789012:key/abc"
    with_key = evaluate(template, encryption["ServerSideEncryptionByDefault"], {"BucketKmsKeyArn": key})
    assert with_key == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    logs = resources["PredictFunctionLogs"]["Properties"]
    assert evaluate(template, logs["KmsKeyId"], {"LogsKmsKeyArn": key}) == key


BUCKET_KEY = "arn:aws:kms:us-east-1:123456789012:key/bucket"


def key_grants(template: dict[str, Any], role: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """What the role may do with the model bucket's objects and with BUCKET_KEY, under `parameters`."""
    granted = [s for s in evaluate(template, statements(role), parameters) if s != {"Ref": "AWS::NoValue"}]
    objects = [s for s in granted if "${ModelBucket.Arn}/" in json.dumps(s["Resource"])]
    on_key = [s for s in granted if BUCKET_KEY in as_list(s["Resource"])]
    return {
        "reads": any("s3:GetObject" in as_list(s["Action"]) for s in objects),
        "writes": any("s3:PutObject" in as_list(s["Action"]) for s in objects),
        "key": {action for s in on_key for action in as_list(s["Action"])},
        "through_s3_only": all("kms:ViaService" in json.dumps(s.get("Condition")) for s in on_key),
    }


def test_every_role_that_reads_or_writes_model_objects_may_use_the_bucket_key() -> None:
    """With BucketKmsKeyArn, S3 decrypts a read (kms:Decrypt) and encrypts a write (kms:GenerateDataKey) with
    the caller's own permissions: a reader or writer of the model bucket without them gets AccessDenied."""
    template = transformed()
    roles = {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    touching = set()
    for name, role in roles.items():
        assert not key_grants(template, role, {})["key"], f"{name}: a key grant without BucketKmsKeyArn"
        grants = key_grants(template, role, {"BucketKmsKeyArn": BUCKET_KEY})
        if grants["reads"] or grants["writes"]:
            touching.add(name)
        if grants["reads"]:
            assert "kms:Decrypt" in grants["key"], f"{name} reads model objects but cannot decrypt them"
        if grants["writes"]:
            assert "kms:GenerateDataKey" in grants["key"], f"{name} writes model objects but cannot encrypt them"
        assert grants["key"] <= {"kms:Decrypt", "kms:GenerateDataKey"} and grants["through_s3_only"], name
    # The API, the monitor, both batch functions and Firehose (captures and labels) all use the bucket.
    assert {
        "PredictFunctionRole",
        "MonitorFunctionRole",
        "BatchPlanFunctionRole",
        "ScoreChunkFunctionRole",
        "RecordDeliveryRole",
    } <= touching


def test_model_bucket_access_logs_are_optional_and_expire() -> None:
    template = transformed()
    resources = template["Resources"]
    logging = resources["ModelBucket"]["Properties"]["LoggingConfiguration"]
    assert evaluate(template, logging, {}) == {"Ref": "AWS::NoValue"}
    on = {"ModelBucketAccessLogs": "true"}
    assert evaluate(template, logging, on)["DestinationBucketName"] == {"Ref": "ModelBucketAccessLogBucket"}
    assert {"ModelBucketAccessLogBucket", "ModelBucketAccessLogBucketPolicy"} <= created(template, on)
    log_bucket = resources["ModelBucketAccessLogBucket"]["Properties"]
    assert log_bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == {"Ref": "LogRetentionDays"}
    assert all(log_bucket["PublicAccessBlockConfiguration"].values())
    [write, deny] = resources["ModelBucketAccessLogBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert write["Principal"] == {"Service": "logging.s3.amazonaws.com"} and write["Action"] == "s3:PutObject"
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# The BatchScore state machine and its functions.


def batch_definition(resources: dict[str, Any]) -> dict[str, Any]:
    return resources["BatchScoreStateMachine"]["Properties"]["Definition"]


def walk_states(states: dict[str, Any], start: str) -> set[str]:
    """The states reachable from `start`; every transition must name a state that exists."""
    seen, pending = set(), [start]
    while pending:
        name = pending.pop()
        assert name in states, f"transition to missing state {name!r}"
        if name in seen:
            continue
        seen.add(name)
        spec = states[name]
        targets = [spec.get("Next"), spec.get("Default"), *(c["Next"] for c in spec.get("Choices", []))]
        targets += [catch["Next"] for catch in spec.get("Catch", [])]
        pending += [target for target in targets if target]
        if spec["Type"] == "Map":
            processor = spec["ItemProcessor"]
            assert walk_states(processor["States"], processor["StartAt"]) == set(processor["States"])
        if spec["Type"] not in ("Succeed", "Fail", "Choice"):
            assert spec.get("End") or spec.get("Next"), f"{name} neither ends nor moves on"
    return seen


def test_batch_state_machine_graph_is_whole(resources: dict[str, Any]) -> None:
    definition = batch_definition(resources)
    assert walk_states(definition["States"], definition["StartAt"]) == set(definition["States"])
    maps = {name: spec for name, spec in definition["States"].items() if spec["Type"] == "Map"}
    assert set(maps) == {"Scan", "Score"}
    for spec in maps.values():
        assert spec["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert spec["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"  # items never ride in the state
        assert spec["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
        assert spec["MaxConcurrencyPath"] == "$.plan.concurrency"
    # A chunk may run for up to 15 minutes: longer than an express child workflow may live.
    assert maps["Score"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
    assert maps["Score"]["ToleratedFailurePercentage"] == 100  # failures reach the summary


def test_batch_workers_retry_timeouts_and_throttles_with_backoff(resources: dict[str, Any]) -> None:
    states = batch_definition(resources)["States"]
    for map_state in ("Scan", "Score"):
        [task] = states[map_state]["ItemProcessor"]["States"].values()
        [retry] = task["Retry"]
        assert {"Sandbox.Timedout", "States.Timeout", "Lambda.TooManyRequestsException", "StoreUnreachable"} <= set(
            retry["ErrorEquals"]
        )
        assert retry["BackoffRate"] >= 2 and retry["MaxAttempts"] >= 3 and retry["JitterStrategy"] == "FULL"
        assert "InvalidInput" not in retry["ErrorEquals"]  # a bad file fails at once


def s3_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """The role's statements; a conditional one (Fn::If) counts as its statement when the condition holds."""
    statements = [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    return [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]


def test_batch_functions_read_input_and_model_and_write_only_the_output(resources: dict[str, Any]) -> None:
    input_arn = "arn:${AWS::Partition}:s3:::${Bucket}/${BatchInputPrefix}/*"
    output_arn = "arn:${AWS::Partition}:s3:::${Bucket}/${BatchOutputPrefix}/*"
    for function in ("BatchPlanFunction", "ScoreChunkFunction"):
        statements = s3_statements(resources[f"{function}Role"])
        [verify] = [s for s in statements if s["Action"] == "kms:Verify"]  # with ModelSigningKeyArn, as the API
        assert verify["Resource"] == {"Ref": "ModelSigningKeyArn"}
        [decrypt] = [s for s in statements if s["Action"] == "kms:Decrypt"]  # with BucketKmsKeyArn
        assert decrypt["Resource"] == {"Ref": "BucketKmsKeyArn"}
        statements.remove(verify)
        statements.remove(decrypt)
        writes = {"s3:PutObject", "s3:AbortMultipartUpload"}
        for statement in statements:
            actions = set(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
            assert actions <= {"s3:GetObject", "s3:ListBucket"} | writes, actions
            resource = json.dumps(statement["Resource"])
            if actions & writes:
                assert output_arn in resource and input_arn not in resource and "Model" not in resource
            assert '"*"' not in resource
        readable = json.dumps([s["Resource"] for s in statements if "s3:GetObject" in json.dumps(s["Action"])])
        assert input_arn in readable and json.dumps(MODEL_FILES) in readable
        assert "${ModelName}/*" not in readable  # the model's versions and aliases, not its captures
        properties = resources[function]["Properties"]
        assert properties["Layers"] == resources["PredictFunction"]["Properties"]["Layers"]  # the API's layer
        assert properties["Code"] == resources["PredictFunction"]["Properties"]["Code"]  # and its code


def test_batch_state_machine_may_only_invoke_its_functions_and_use_the_output_prefix(
    resources: dict[str, Any],
) -> None:
    statements = s3_statements(resources["BatchScoreRole"])
    by_sid = {statement["Sid"]: statement for statement in statements}
    assert by_sid["InvokeBatchFunctions"]["Action"] == "lambda:InvokeFunction"
    assert "BatchPlanFunction" in json.dumps(by_sid["InvokeBatchFunctions"]["Resource"])
    s3 = by_sid["ReadPlansAndWriteMapResults"]
    assert "${BatchOutputPrefix}/*" in json.dumps(s3["Resource"]) and "Input" not in json.dumps(s3["Resource"])
    assert "batch-score" in json.dumps(by_sid["RunMapChildWorkflows"]["Resource"])


@pytest.mark.slow
def test_cfn_lint_checks_the_state_machine_definition(tmp_path: Path) -> None:
    broken = TEMPLATE.read_text().replace(
        "                  OutputPath: $.Payload\n", "                  OutputPat: $.Payload\n", 1
    )
    assert broken != TEMPLATE.read_text()
    (tmp_path / "template.yaml").write_text(broken)
    result = run_tool("cfn-lint", str(tmp_path / "template.yaml"))
    assert result.returncode != 0 and "OutputPat" in result.stdout
