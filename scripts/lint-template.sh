#!/usr/bin/env bash
# Lints template.yaml with cfn-lint (from PyPI), installed into a project-local venv so that
# nothing on the machine has to be set up by hand and CI on a fresh machine works.
#
# Two passes:
#   1. cfn-lint on template.yaml itself (it validates the SAM resources against their
#      schemas);
#   2. the real SAM transform (aws-sam-translator, what CloudFormation runs on deploy), then
#      cfn-lint on the plain CloudFormation it produces, which catches what schema checks of
#      the SAM resources cannot (Globals the transform rejects, bad event wiring, ...).
#
# Idempotent: the venv is reused once both tools are in it. Quiet on success; prints the
# findings and exits non-zero when the template has errors or warnings.
#
# Usage: scripts/lint-template.sh
# Env:   CFN_LINT_VENV (default .venv-tools)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CFN_LINT_VENV:-$root/.venv-tools}"
template="$root/template.yaml"
# Pinned to major versions so a new rule set cannot break CI unannounced.
specs=("cfn-lint>=1.20,<2" "aws-sam-translator>=1.90,<2")

if ! "$venv/bin/cfn-lint" --version >/dev/null 2>&1 ||
    ! "$venv/bin/python" -c 'import samtranslator' >/dev/null 2>&1; then
    python3 -m venv "$venv" >/dev/null
    log="$(mktemp)"
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "${specs[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "lint-template: could not install ${specs[*]} into $venv" >&2
        exit 1
    fi
    rm -f "$log"
fi

fail() {
    printf '%s\n' "$1" >&2
    echo "lint-template: $2" >&2
    exit 1
}

# cfn-lint exits non-zero on errors (2), warnings (4) and informational findings (8):
# warnings fail too, so they are fixed rather than left to pile up.
out="$("$venv/bin/cfn-lint" -- "$template" 2>&1)" ||
    fail "$out" "cfn-lint found problems in template.yaml"

transformed="$(mktemp --suffix=.json)"
trap 'rm -f "$transformed"' EXIT
out="$(AWS_DEFAULT_REGION=us-east-1 "$venv/bin/python" - "$template" "$transformed" 2>&1 <<'PY'
import json
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

template, matches = decode(sys.argv[1])
if matches:
    sys.exit("\n".join(str(m) for m in matches))
template = json.loads(json.dumps(template, default=str))
# `sam build`/`sam package` replace the local CodeUri by an S3 location before the
# transform runs; do the same with a placeholder.
template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://bucket/code.zip"
for resource in template.get("Resources", {}).values():
    if resource.get("Type") == "AWS::Serverless::Function":
        resource.get("Properties", {}).pop("CodeUri", None)


class NoManagedPolicies:
    """The transform asks IAM for managed policy ARNs only when policies are named."""

    def load(self):
        return {}


try:
    output = transform(template, {"AWS::Region": "us-east-1"}, NoManagedPolicies())
except Exception as e:  # the translator reports every problem in one exception
    sys.exit(f"the SAM transform rejects the template: {e}")
with open(sys.argv[2], "w") as f:
    json.dump(output, f)
PY
)" || fail "$out" "the SAM transform failed"

out="$("$venv/bin/cfn-lint" -- "$transformed" 2>&1)" ||
    fail "$out" "cfn-lint found problems in the transformed template"
