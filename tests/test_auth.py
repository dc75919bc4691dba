"""AuthType on every front door (the transformed template): none, api_key, iam (SigV4) and jwt, with
per-route scopes for POST /predict and POST /feedback; invalid combinations refused by the template's Rules."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_template import created, evaluate, transformed, without_no_value

USER_POOL = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_Example"
ISSUER = "https://issuer.example.com"
PROXY = "x-amazon-apigateway-any-method"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return transformed()


def rest_api(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    body = template["Resources"]["PredictApi"]["Properties"]["Body"]
    return without_no_value(evaluate(template, body, {"ApiType": "rest", **parameters}))


def http_api(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    body = template["Resources"]["PredictHttpApi"]["Properties"]["Body"]
    return without_no_value(evaluate(template, body, {"ApiType": "http", **parameters}))


def function_url_auth(template: dict[str, Any], **parameters: str) -> str:
    url = template["Resources"]["PredictFunctionUrl"]["Properties"]
    return evaluate(template, url["AuthType"], {"ApiType": "url", **parameters})


def refused(template: dict[str, Any], **parameters: str) -> list[str]:
    """The descriptions of every Rule assertion these parameters break (what CloudFormation would refuse)."""
    broken = []
    for rule in template["Rules"].values():
        if "RuleCondition" in rule and not evaluate(template, rule["RuleCondition"], parameters):
            continue
        broken += [
            a["AssertDescription"] for a in rule["Assertions"] if not evaluate(template, a["Assert"], parameters)
        ]
    return broken


def securities(paths: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (path, method): operation.get("security")
        for path, methods in paths.items()
        for method, operation in methods.items()
    }


def test_iam_is_the_default_on_every_front_door(template: dict[str, Any]) -> None:
    assert template["Parameters"]["AuthType"]["Default"] == "iam"
    rest = rest_api(template)
    for (_, method), security in securities(rest["paths"]).items():
        assert security == ([{"sigv4": []}] if method == PROXY else None)  # a preflight carries no credentials
    assert rest["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    http = http_api(template)
    assert securities(http["paths"]) == {("$default", PROXY): [{"sigv4": []}]}
    assert http["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert function_url_auth(template) == "AWS_IAM"
    assert not {"PublicUrlInvokesFunctionUrl", "PublicUrlInvokesFunction"} & created(template, {"ApiType": "url"})


def test_none_leaves_every_front_door_open(template: dict[str, Any]) -> None:
    assert set(securities(rest_api(template, AuthType="none")["paths"]).values()) == {None}
    assert set(securities(http_api(template, AuthType="none")["paths"]).values()) == {None}
    assert function_url_auth(template, AuthType="none") == "NONE"
    public = created(template, {"ApiType": "url", "AuthType": "none"})
    assert {"PublicUrlInvokesFunctionUrl", "PublicUrlInvokesFunction"} <= public


def test_api_key_is_a_rest_api_key_with_a_usage_plan(template: dict[str, Any]) -> None:
    rest = rest_api(template, AuthType="api_key")
    for (_, method), security in securities(rest["paths"]).items():
        assert security == ([{"api_key": []}] if method == PROXY else None)
    plan = {"ApiKey", "ApiUsagePlan", "ApiUsagePlanKey"}
    assert plan <= created(template, {"ApiType": "rest", "AuthType": "api_key"})
    assert not plan & created(template, {"ApiType": "rest", "AuthType": "iam"})
    for api_type in ("http", "url"):
        assert any("needs ApiType=rest" in why for why in refused(template, ApiType=api_type, AuthType="api_key"))


def test_jwt_on_the_http_api_takes_any_oidc_issuer_with_a_scope_for_predictions_and_one_for_feedback(
    template: dict[str, Any],
) -> None:
    jwt: dict[str, Any] = {"AuthType": "jwt", "JwtIssuer": ISSUER, "JwtAudience": ["client-a", "client-b"]}
    http = http_api(template, **jwt, JwtPredictScope="forest/predict", JwtFeedbackScope="forest/feedback")
    # Every route but /feedback needs the predict scope: every protocol's prediction route comes through $default.
    assert securities(http["paths"]) == {
        ("$default", PROXY): [{"jwt": ["forest/predict"]}],
        ("/feedback", "post"): [{"jwt": ["forest/feedback"]}],
    }
    authorizer = http["components"]["securitySchemes"]["jwt"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt" and authorizer["identitySource"] == "$request.header.Authorization"
    assert authorizer["jwtConfiguration"] == {"issuer": ISSUER, "audience": ["client-a", "client-b"]}
    assert not refused(template, ApiType="http", **jwt)
    unscoped = http_api(template, **jwt)
    assert set(map(str, securities(unscoped["paths"]).values())) == {str([{"jwt": []}])}  # any valid token


def test_jwt_on_the_rest_api_takes_a_cognito_user_pool_with_a_scope_for_predictions_and_one_for_feedback(
    template: dict[str, Any],
) -> None:
    jwt = {"AuthType": "jwt", "JwtUserPoolArn": USER_POOL}
    rest = rest_api(template, **jwt, JwtPredictScope="forest/predict")
    found = securities(rest["paths"])
    assert found[("/feedback", "post")] == [{"cognito": []}]
    for path in ("/", "/{proxy+}", "/feedback"):
        assert found[(path, PROXY)] == [{"cognito": ["forest/predict"]}], path
        assert found[(path, "options")] is None
    authorizer = rest["securityDefinitions"]["cognito"]["x-amazon-apigateway-authorizer"]
    assert authorizer == {"type": "cognito_user_pools", "providerARNs": [USER_POOL]}
    scoped = securities(
        rest_api(template, **jwt, JwtPredictScope="forest/predict", JwtFeedbackScope="forest/feedback")["paths"]
    )
    assert scoped[("/feedback", "post")] == [{"cognito": ["forest/feedback"]}]
    assert scoped[("/feedback", PROXY)] == scoped[("/{proxy+}", PROXY)] == [{"cognito": ["forest/predict"]}]
    assert scoped[("/feedback", "options")] is None
    assert "/feedback" not in rest_api(template, AuthType="iam")["paths"]  # only jwt needs a route of its own
    assert not refused(template, ApiType="rest", **jwt)


@pytest.mark.parametrize(
    ("parameters", "why"),
    [
        ({"ApiType": "url", "AuthType": "jwt"}, "a function URL accepts only AWS_IAM or NONE"),
        ({"ApiType": "rest", "AuthType": "jwt"}, "needs JwtUserPoolArn"),
        ({"ApiType": "http", "AuthType": "jwt"}, "needs JwtIssuer and JwtAudience"),
        ({"ApiType": "http", "AuthType": "jwt", "JwtIssuer": ISSUER}, "needs JwtIssuer and JwtAudience"),
    ],
)
def test_jwt_combinations_that_cannot_work_are_refused(
    template: dict[str, Any], parameters: dict[str, str], why: str
) -> None:
    assert any(why in description for description in refused(template, **parameters))


@pytest.mark.parametrize("api_type", ["rest", "http", "url"])
@pytest.mark.parametrize("auth", ["none", "iam"])
def test_none_and_iam_work_on_every_front_door(template: dict[str, Any], api_type: str, auth: str) -> None:
    assert not refused(template, ApiType=api_type, AuthType=auth)
