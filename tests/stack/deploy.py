"""Deploys a ferry CloudFormation template into a moto that enforces IAM, and
gives each of the stack's roles an IAM user with exactly that role's policies.

moto answers 500 to sts:AssumeRole for a role whose principal is a service,
so a binary cannot run *as* the role: it runs as a user holding the same
inline and managed policies. moto stores the `!If [c, x, !Ref AWS::NoValue]`
items of a list as the string "None"; those are dropped when a policy is
copied, as CloudFormation drops them on AWS.

Usage: deploy.py ENDPOINT TEMPLATE STACK PARAMS_JSON
(admin keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). Prints one JSON
document: the stack's outputs, and per role its user's keys, its policies,
and (ECS) its task definition's command and environment or (EC2) its launch
template's user data.
"""
import ast
import base64
import json
import sys
import time
import uuid

import boto3

endpoint, template, stack, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])


def client(name):
    return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1")


def clean(doc):
    """A policy document without the items moto stored as "None" (or None:
    moto 5.1 answers a role's inline policy as a Python literal)."""
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            doc = ast.literal_eval(doc)
    return drop_none(doc)


# AWS authorises these API calls with another action's permission; moto 5.1
# asks for an action named after the call itself.
MOTO_ACTIONS = {
    "sqs:SendMessage": ["sqs:SendMessageBatch"],
    "sqs:DeleteMessage": ["sqs:DeleteMessageBatch"],
    "sqs:ChangeMessageVisibility": ["sqs:ChangeMessageVisibilityBatch"],
    "dynamodb:ConditionCheckItem": ["dynamodb:TransactWriteItems"],
}


def for_moto(doc):
    """The policy as moto 5.1 must see it to grant what AWS grants (see
    docs/COMPATIBILITY.md): the batch calls' own action names are added
    beside the actions AWS authorises them with, and DynamoDB and Secrets
    Manager statements get Resource "*" because moto checks those calls
    against "*" (it names no table or secret), which a statement scoped to
    one never matches. Every other scope (S3 bucket and prefix, the SQS
    queues) is kept exactly."""
    for st in doc.get("Statement", []):
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else list(actions)
        actions += [alias for a in actions for alias in MOTO_ACTIONS.get(a, [])]
        st["Action"] = actions
        if actions and all(a.startswith(("dynamodb:", "secretsmanager:")) for a in actions):
            st["Resource"] = "*"
    return doc


def drop_none(v):
    if isinstance(v, list):
        return [drop_none(x) for x in v if x not in ("None", None)]
    if isinstance(v, dict):
        return {k: drop_none(x) for k, x in v.items() if x not in ("None", None)}
    return v


cfn, iam, ec2 = client("cloudformation"), client("iam"), client("ec2")
vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
group = ec2.create_security_group(GroupName=f"ferry-{uuid.uuid4().hex[:8]}", Description="ferry", VpcId=vpc)["GroupId"]
values = {"Subnets": subnet, "SecurityGroups": group, **params}
body = open(template).read()
cfn.create_stack(
    StackName=stack,
    TemplateBody=body,
    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
    Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
)
for _ in range(300):
    s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    if not s["StackStatus"].endswith("IN_PROGRESS"):
        break
    time.sleep(0.2)
if s["StackStatus"] != "CREATE_COMPLETE":
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events if "FAILED" in e["ResourceStatus"]]
    sys.exit(f"stack {stack}: {s['StackStatus']}: {failed}")
outputs = {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}
resources = {
    r["LogicalResourceId"]: r
    for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    if r.get("LogicalResourceId")
}


def user_with(policies, managed):
    name = f"ferry-{uuid.uuid4().hex[:10]}"
    iam.create_user(UserName=name)
    for pname, doc in policies.items():
        iam.put_user_policy(UserName=name, PolicyName=pname, PolicyDocument=json.dumps(for_moto(json.loads(json.dumps(doc)))))
    for arn in managed:
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"user": name, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


roles = {}
for logical, r in resources.items():
    if r["ResourceType"] != "AWS::IAM::Role":
        continue
    role = r["PhysicalResourceId"]
    policies = {
        p: clean(iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"])
        for p in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }
    managed = [
        p["PolicyArn"]
        for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        if ":aws:policy/" not in p["PolicyArn"]
    ]
    roles[logical] = {"policies": policies, "managed": managed, **user_with(policies, managed)}

managed_policies = {}
for logical, r in resources.items():
    if r["ResourceType"] == "AWS::IAM::ManagedPolicy":
        arn = r["PhysicalResourceId"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        doc = clean(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])
        # Copied inline, so it passes through for_moto as the roles' policies do.
        managed_policies[logical] = {"arn": arn, "document": doc, **user_with({logical: doc}, [])}

tasks = {}
ecs = client("ecs")
for logical, r in resources.items():
    if r["ResourceType"] == "AWS::ECS::TaskDefinition":
        td = ecs.describe_task_definition(taskDefinition=r["PhysicalResourceId"])["taskDefinition"]
        c = td["containerDefinitions"][0]
        tasks[logical] = {
            "role": td.get("taskRoleArn", "").rsplit("/", 1)[-1],
            "command": c.get("command", []),
            "environment": {e["name"]: str(e["value"]) for e in c.get("environment", [])},
        }

launch = {}
for logical, r in resources.items():
    if r["ResourceType"] == "AWS::EC2::LaunchTemplate":
        v = ec2.describe_launch_template_versions(LaunchTemplateId=r["PhysicalResourceId"])["LaunchTemplateVersions"][0]
        data = v["LaunchTemplateData"].get("UserData", "")
        launch[logical] = {"user_data": base64.b64decode(data).decode() if data else ""}

print(json.dumps({
    "outputs": outputs,
    "roles": roles,
    "managed_policies": managed_policies,
    "tasks": tasks,
    "launch_templates": launch,
}, default=str))
