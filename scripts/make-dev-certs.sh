#!/usr/bin/env bash
# Test certificates for a TLS Mosquitto on this machine: a CA, a server certificate for
# localhost / 127.0.0.1 and one client certificate per name given (CN = the name).
# For development and tests only: the keys are unencrypted and the CA signs anything asked.
#
#   scripts/make-dev-certs.sh OUT_DIR [CLIENT...]    e.g. scripts/make-dev-certs.sh /tmp/certs ems-controller row01
#
# Writes OUT_DIR/ca.crt, ca.key, server.crt, server.key and CLIENT.crt, CLIENT.key.
set -euo pipefail
out=${1:?usage: make-dev-certs.sh OUT_DIR [CLIENT...]}
shift
days=${CERT_DAYS:-825}
mkdir -p "$out"
cd "$out"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=ems dev CA" -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

sign() {  # sign NAME EXTENSIONS: NAME.key -> NAME.crt, signed by the CA
  local name=$1 ext=$2
  openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

key server.key
sign server "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature"

for client in "$@"; do
  key "$client.key"
  sign "$client" "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
done
rm -f ca.srl
# the broker (often user mosquitto) must read its own key and the CA certificate
chmod 644 ca.crt server.crt ./*.crt
echo "certificates in $out: ca.crt server.crt $(for c in "$@"; do printf '%s.crt ' "$c"; done)"
