#!/usr/bin/env bash
# Lints every CloudFormation template with cfn-lint (installed into a venv
# on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FERRY_CFN_LINT_VENV:-/opt/ferry-cfn-lint}
if [ ! -x "$VENV/bin/cfn-lint" ]; then
  echo "[infra] installing cfn-lint into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'cfn-lint>=1.20,<2'
fi
"$VENV/bin/cfn-lint" infra/*.yaml
echo "[infra] cfn-lint: $(ls infra/*.yaml | wc -l) template(s) clean" >&2
