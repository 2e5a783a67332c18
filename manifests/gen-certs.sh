#!/usr/bin/env bash
# Generate the provider's TLS material for manifests/ (tested by tests/k8s/test_gen_certs.py).
#
#   manifests/gen-certs.sh OUTDIR
#
# Writes into OUTDIR:
#   ca.crt, ca.key         a CA (ECDSA P-256, 10 years by default). Kept and REUSED when OUTDIR
#                          already holds both, so re-running rotates only the server certificate
#                          and the Provider's caBundle stays valid.
#   tls.crt, tls.key       the serving certificate (ECDSA P-256, serverAuth) for
#                          <service>.<namespace>, .svc, .svc.cluster.local, localhost, 127.0.0.1
#   tls-secret.yaml        Secret <service>-tls (type kubernetes.io/tls, plus ca.crt)
#   provider.yaml          manifests/gatekeeper/provider.yaml with caBundle filled in
#
# Environment (all optional):
#   SERVICE=atcr-verify-provider  NAMESPACE=gatekeeper-system  DAYS=365  CA_DAYS=3650
#   EXTRA_SANS="DNS:provider.example,IP:10.1.2.3"   more subjectAltName entries
#   PROVIDER_URL=https://127.0.0.1:8443/validate   replaces spec.url (out-of-cluster runs)
#   PROVIDER_TEMPLATE=path/to/provider.yaml        default: next to this script
#
# Needs openssl (1.1.1+, 3.x or LibreSSL), nothing else.
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
service=${SERVICE:-atcr-verify-provider}
namespace=${NAMESPACE:-gatekeeper-system}
days=${DAYS:-365}
ca_days=${CA_DAYS:-3650}
template=${PROVIDER_TEMPLATE:-$here/gatekeeper/provider.yaml}
secret_name="${service}-tls"

command -v openssl >/dev/null || { echo "gen-certs: openssl not found" >&2; exit 1; }
[[ -f "$template" ]] || { echo "gen-certs: no Provider template at $template" >&2; exit 1; }
mkdir -p "$out"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

b64() { openssl base64 -A < "$1"; }

if [[ -s "$out/ca.crt" && -s "$out/ca.key" ]]; then
  echo "gen-certs: reusing the CA in $out" >&2
else
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key"
  cat > "$work/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = ${service}-ca
O = atcr-verifier
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$ca_days" \
    -config "$work/ca.cnf" -out "$work/ca.crt"
  mv "$work/ca.key" "$out/ca.key"
  mv "$work/ca.crt" "$out/ca.crt"
fi

sans="DNS:${service}.${namespace},DNS:${service}.${namespace}.svc,DNS:${service}.${namespace}.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
if [[ -n "${EXTRA_SANS:-}" ]]; then
  sans="${sans},${EXTRA_SANS}"
fi

openssl ecparam -name prime256v1 -genkey -noout -out "$work/tls.key"
# PKCS#8 ("BEGIN PRIVATE KEY"): what every TLS stack loads.
openssl pkcs8 -topk8 -nocrypt -in "$work/tls.key" -out "$work/tls.p8.key"
openssl req -new -key "$work/tls.p8.key" -subj "/O=atcr-verifier/CN=${service}.${namespace}.svc" \
  -out "$work/tls.csr"
cat > "$work/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${sans}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl x509 -req -in "$work/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
  -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
  -extfile "$work/server.ext" -out "$work/tls.crt" 2>/dev/null
openssl verify -CAfile "$out/ca.crt" -purpose sslserver "$work/tls.crt" >/dev/null
mv "$work/tls.p8.key" "$out/tls.key"
mv "$work/tls.crt" "$out/tls.crt"

cat > "$out/tls-secret.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: ${secret_name}
  namespace: ${namespace}
  labels:
    app.kubernetes.io/name: ${service}
    app.kubernetes.io/part-of: atcr-verifier
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$out/tls.crt")
  tls.key: $(b64 "$out/tls.key")
  ca.crt: $(b64 "$out/ca.crt")
EOF

ca_bundle=$(b64 "$out/ca.crt")
url_expr='s#^\(  url: \).*#\1'"${PROVIDER_URL:-}"'#'
[[ -n "${PROVIDER_URL:-}" ]] || url_expr='s#^\(  url: \)https://[^.]*\.[^:]*:#\1https://'"${service}.${namespace}"':#'
grep -q '"@CA_BUNDLE@"' "$template" || { echo "gen-certs: no caBundle placeholder in $template" >&2; exit 1; }
sed -e "s#\"@CA_BUNDLE@\"#${ca_bundle}#" -e "$url_expr" "$template" > "$out/provider.yaml"
chmod 0644 "$out/ca.crt" "$out/tls.crt" "$out/provider.yaml"

echo "gen-certs: wrote $out/{ca.crt,ca.key,tls.crt,tls.key,tls-secret.yaml,provider.yaml}" >&2
echo "gen-certs: server certificate SANs: $sans" >&2
