#!/usr/bin/env bash
# The Python tools some tests drive, from PyPI, in target/tools/venv (or $PACKWELL_TOOLS_VENV):
# schemathesis and openapi-spec-validator check the HTTP API against its OpenAPI document
# (tests/station_conformance.rs); aiosmtpd is the local SMTP server the e-mail tests deliver to
# (tests/email_service.rs). Tests never install anything themselves: without these tools they
# say so and skip, or fail under PACKWELL_REQUIRE_TOOLS=1 (as in CI, where .ci/run runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PACKWELL_TOOLS_VENV:-target/tools/venv}"
if [ -x "$venv/bin/schemathesis" ] && [ -x "$venv/bin/openapi-spec-validator" ] \
   && "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet schemathesis openapi-spec-validator aiosmtpd
