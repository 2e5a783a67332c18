#!/usr/bin/env bash
# The `make demo` story, run inside `atcr-devnet run` (which exports ATCR_DEVNET_*):
# a trust policy naming the demo publisher, then the CLI admitting the signed image and denying
# the unsigned one. Exits non-zero if either verdict is not the expected one.
set -uo pipefail

policy="$(mktemp --suffix=.yaml)"
trap 'rm -f "$policy"' EXIT
cat > "$policy" <<YAML
version: 1.0
trustedDIDs:
  ${ATCR_DEVNET_DID}:
    name: "Demo publisher (${ATCR_DEVNET_HANDLE})"
    validFrom: "2024-01-01T00:00:00Z"
    expiresAt: null
policies:
  - name: local-registry
    scope: "${ATCR_DEVNET_REGISTRY}/**"
    require: {signature: true, minSignatures: 1}
    action: enforce
YAML

export ATCR_PLC_URL="$ATCR_DEVNET_PLC_URL"
export ATCR_PLAIN_HTTP="$ATCR_DEVNET_REGISTRY"
export ATCR_ALLOW_PRIVATE_NETWORKS=1

banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

banner "Trust policy"
cat "$policy"

banner "atcr-verify verify ${ATCR_DEVNET_SIGNED_TAG} --policy policy.yaml"
atcr-verify verify "$ATCR_DEVNET_SIGNED_TAG" --policy "$policy"
signed=$?

banner "atcr-verify verify ${ATCR_DEVNET_UNSIGNED_TAG} --policy policy.yaml"
atcr-verify verify "$ATCR_DEVNET_UNSIGNED_TAG" --policy "$policy"
unsigned=$?

banner "Result"
echo "signed image:   exit $signed (expected 0: admitted)"
echo "unsigned image: exit $unsigned (expected 1: denied)"
if [[ $signed -eq 0 && $unsigned -eq 1 ]]; then
  echo "demo OK: the signed image is admitted and the unsigned one denied"
  exit 0
fi
echo "demo FAILED" >&2
exit 1
