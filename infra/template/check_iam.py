"""Expands template.yaml with the SAM translator, offline, and checks the IAM it
deploys (run by `infra/scripts/template-tools.sh lint`, so by `make test`).

What CloudFormation receives is the translator's output, not template.yaml:
SAM event sources attach AWS-managed policies (AWSLambdaDynamoDBExecutionRole,
AWSLambdaSQSQueueExecutionRole) that grant every stream and queue of the
account, and those never show in the source. So the check reads the expanded
roles:

- a role's managed policies are only the two SAM adds to every function and
  that hold no data: AWSLambdaBasicExecutionRole (its own log lines) and
  AWSXrayWriteOnlyAccess (trace segments); neither has a resource-level form;
- no statement allows `*`, `service:*` or a resource that is `*` or a literal
  ARN: every resource is one of this stack's (`Ref`/`GetAtt` of a template
  resource, or a `Sub` naming one or the stage's secret prefix);
- every event source mapping's stream or queue is readable by its function's
  role through statements naming exactly that resource;
- ingest never writes endpoint, customer or owner items of the config table,
  and push writes only endpoint health (`dynamodb:LeadingKeys`).

    python check_iam.py template.yaml        # exits 1 with one line per finding
"""

from __future__ import annotations

import copy
import json
import logging
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

# Managed policies SAM attaches to every function (logs) and to traced ones
# (X-Ray): neither reads or writes data, neither has resource-level permissions.
ALLOWED_MANAGED = {
    "AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess",
}

# What Lambda's pollers need on the event source, by service.
POLLER_ACTIONS = {
    "dynamodb": {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"},
    "sqs": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
}

WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:*",
}


class NoManagedPolicyNames:
    """The translator asks for the account's managed policy names only when
    a function lists one by name; ours list none (offline: no IAM call)."""

    def load(self) -> dict[str, str]:
        return {}


def expand(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    sam = copy.deepcopy(template)
    for resource in sam.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            # `sam build` replaces the local CodeUri with an S3 location.
            resource.setdefault("Properties", {})["CodeUri"] = "s3://offline-bucket/code.zip"
    return transform(sam, parameters or {}, NoManagedPolicyNames())


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def refers_to_stack(resource: Any, logical_ids: set[str]) -> bool:
    """Whether a statement's resource names one of this stack's resources."""
    if isinstance(resource, str):
        return False  # "*" or a literal ARN: not tied to this stack
    if not isinstance(resource, dict) or len(resource) != 1:
        return False
    (fn, arg), = resource.items()
    if fn == "Ref":
        return arg in logical_ids
    if fn == "Fn::GetAtt":
        target = arg[0] if isinstance(arg, list) else str(arg).split(".")[0]
        return target in logical_ids
    if fn == "Fn::Sub":
        text = arg if isinstance(arg, str) else arg[0]
        names = [p.split("}")[0] for p in text.split("${")[1:]]
        targets = {n.split(".")[0] for n in names}
        if targets & logical_ids:
            return True
        # The stage's secret prefix (endpoint keys created by the ops CLI).
        return "Stage" in targets and ":secret:platformsync/${Stage}/" in text
    return False


def resource_key(resource: Any) -> str:
    return json.dumps(resource, sort_keys=True)


def leading_keys(statement: dict[str, Any]) -> list[str] | None:
    cond = statement.get("Condition", {}).get("ForAllValues:StringLike", {})
    keys = cond.get("dynamodb:LeadingKeys")
    return None if keys is None else as_list(keys)


# CodeDeploy's service role (SafeDeploys=true): assumed by CodeDeploy, not by
# a function; its AWS policy shifts aliases of the stack's functions.
CODEDEPLOY_MANAGED = {"AWSCodeDeployRoleForLambda"}


def check(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> list[str]:
    expanded = expand(template, parameters)
    resources: dict[str, Any] = expanded["Resources"]
    logical_ids = set(resources)
    findings: list[str] = []

    # role logical id -> function logical id
    function_of_role: dict[str, str] = {}
    role_of_function: dict[str, str] = {}
    for fid, r in resources.items():
        if r["Type"] == "AWS::Lambda::Function":
            role = r["Properties"].get("Role", {})
            if isinstance(role, dict) and "Fn::GetAtt" in role:
                rid = role["Fn::GetAtt"][0]
                function_of_role[rid] = fid
                role_of_function[fid] = rid
            else:
                findings.append(f"{fid}: its role is not one of this stack's")
    # AutoPublishAlias: a mapping invokes the function through its alias.
    function_of_alias = {
        aid: r["Properties"]["FunctionName"].get("Ref")
        for aid, r in resources.items()
        if r["Type"] == "AWS::Lambda::Alias" and isinstance(r["Properties"].get("FunctionName"), dict)
    }

    statements_of_role: dict[str, list[dict[str, Any]]] = {}
    for rid, r in resources.items():
        if r["Type"] != "AWS::IAM::Role":
            continue
        props = r["Properties"]
        assumed_by = json.dumps(props.get("AssumeRolePolicyDocument", {}))
        allowed = ALLOWED_MANAGED
        if "codedeploy.amazonaws.com" in assumed_by and "lambda.amazonaws.com" not in assumed_by:
            allowed = CODEDEPLOY_MANAGED
        for arn in props.get("ManagedPolicyArns", []):
            name = arn.get("Fn::Sub", arn) if isinstance(arn, dict) else arn
            name = str(name).rsplit("/", 1)[-1]
            if name not in allowed:
                findings.append(f"{rid}: managed policy {name} (grants resources of the whole account)")
        statements = [
            s for p in props.get("Policies", []) for s in as_list(p["PolicyDocument"]["Statement"])
        ]
        statements_of_role[rid] = statements
        for s in statements:
            sid = s.get("Sid", "?")
            if s.get("Effect") != "Allow":
                continue
            for action in as_list(s.get("Action", [])):
                if action == "*" or str(action).endswith(":*"):
                    findings.append(f"{rid} {sid}: wildcard action {action}")
            if "NotResource" in s or "NotAction" in s:
                findings.append(f"{rid} {sid}: NotResource/NotAction")
            for res in as_list(s.get("Resource", [])):
                if not refers_to_stack(res, logical_ids):
                    findings.append(f"{rid} {sid}: resource {json.dumps(res)} is not one of this stack's")

    # Every mapping's source, readable through statements naming it.
    for mid, r in resources.items():
        if r["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        props = r["Properties"]
        target = props.get("FunctionName", {})
        fid = target.get("Ref") if isinstance(target, dict) else None
        fid = function_of_alias.get(fid, fid)
        if fid not in role_of_function:
            findings.append(f"{mid}: FunctionName is not a function of this stack")
            continue
        source = props.get("EventSourceArn")
        if not refers_to_stack(source, logical_ids):
            findings.append(f"{mid}: event source {json.dumps(source)} is not one of this stack's")
            continue
        attr = source["Fn::GetAtt"][1] if "Fn::GetAtt" in source else ""
        service = "dynamodb" if attr == "StreamArn" else "sqs"
        granted = {
            a
            for s in statements_of_role[role_of_function[fid]]
            if s.get("Effect") == "Allow"
            and any(resource_key(x) == resource_key(source) for x in as_list(s.get("Resource", [])))
            for a in as_list(s.get("Action", []))
        }
        missing = POLLER_ACTIONS[service] - granted
        if missing:
            findings.append(f"{mid}: {fid}'s role lacks {sorted(missing)} on its event source")

    # Config-table writes of ingest and push stay in the partitions they own.
    owned = {"IngestFunction": ["SAFE#*"], "PushFunction": ["ENDPOINT#*"]}
    for fid, prefixes in owned.items():
        rid = role_of_function.get(fid)
        if rid is None:
            findings.append(f"{fid}: missing")
            continue
        for s in statements_of_role[rid]:
            on_config = any(
                resource_key(x) == resource_key({"Fn::GetAtt": ["ConfigTable", "Arn"]})
                for x in as_list(s.get("Resource", []))
            )
            writes = WRITES & set(as_list(s.get("Action", [])))
            if not (on_config and writes):
                continue
            keys = leading_keys(s)
            if keys is None or not set(keys) <= set(prefixes):
                findings.append(
                    f"{fid} {s.get('Sid', '?')}: {sorted(writes)} on the config table "
                    f"must be limited to dynamodb:LeadingKeys {prefixes} (has {keys})"
                )
    return findings


def self_test() -> None:
    """The checker notices what it must (a SAM SQS event, a `*` resource)."""
    bad = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Q": {"Type": "AWS::SQS::Queue"},
            "F": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Runtime": "provided.al2023",
                    "Handler": "bootstrap",
                    "CodeUri": ".",
                    "Policies": [{"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}],
                    "Events": {"Q": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["Q", "Arn"]}}}},
                },
            },
        },
    }
    found = check(bad)
    assert any("AWSLambdaSQSQueueExecutionRole" in f for f in found), found
    assert any('resource "*"' in f for f in found), found


def check_samconfig(path: Path, template: dict[str, Any]) -> list[str]:
    """samconfig.toml: one stack per stage, whose overrides are the template's
    parameters and whose stack tags name the stage."""
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    parameters = set(template.get("Parameters", {}))
    findings = []
    for env, stage in [("default", "dev"), ("staging", "staging"), ("prod", "prod")]:
        deploy = config.get(env, {}).get("deploy", {}).get("parameters")
        if deploy is None:
            findings.append(f"samconfig.toml: no [{env}.deploy.parameters]")
            continue
        overrides = dict(kv.split("=", 1) for kv in shlex.split(deploy.get("parameter_overrides", "")))
        tags = dict(kv.split("=", 1) for kv in shlex.split(deploy.get("tags", "")))
        for problem, bad in [
            (f"stack_name must be platformsync-{stage}", deploy.get("stack_name") != f"platformsync-{stage}"),
            (f"Stage must be {stage}", overrides.get("Stage") != stage),
            (f"unknown parameters {sorted(set(overrides) - parameters)}", not set(overrides) <= parameters),
            (f"tags must carry project and stage={stage}", tags.get("stage") != stage or "project" not in tags),
            ("capabilities must be CAPABILITY_IAM", deploy.get("capabilities") != "CAPABILITY_IAM"),
        ]:
            if bad:
                findings.append(f"samconfig.toml [{env}]: {problem}")
    return findings


def main() -> int:
    # The translator's own metrics are not published offline; no warning.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    self_test()
    # As deployed by default, and with SafeDeploys (CodeDeploy resources).
    findings = check(template)
    findings += [f"(SafeDeploys=true) {f}" for f in check(template, {"SafeDeploys": "true"})]
    samconfig = Path(path).resolve().parent / "samconfig.toml"
    if samconfig.exists():
        findings += check_samconfig(samconfig, template)
    for f in findings:
        print(f"expanded IAM: {f}", file=sys.stderr)
    if findings:
        return 1
    print(f"expanded IAM: {path}: every permission names this stack's resources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
