#!/usr/bin/env bash
# Makes a private CA and the certificates the compose stack's TLS uses, in ./certs (or $1):
#   ca.pem                                  the CA both sides trust
#   processor.pem, processor-key.pem        dev-processor's server certificate (dev-processor, localhost, 127.0.0.1)
#   task-service-client.pem, -key.pem       the service's client certificate to the Processor (CN task-service)
#   task-service.pem, task-service-key.pem  the service's own server certificate (task-service, localhost, 127.0.0.1)
#   taskctl.pem, taskctl-key.pem            a client certificate for taskctl (CN taskctl)
# For development and tests only: a production deployment gets its certificates from its own CA.
set -euo pipefail
out=${1:-certs}
mkdir -p "$out"
cd "$out"
days=825

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
  -subj "/CN=task-service dev CA" -keyout ca-key.pem -out ca.pem 2>/dev/null

# name cn extended-key-usage [subject-alt-names]
issue() {
  local name=$1 cn=$2 usage=$3 sans=${4:-}
  local ext; ext=$(mktemp)
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature"
    echo "extendedKeyUsage=$usage"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } > "$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" \
    -keyout "$name-key.pem" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
    -extfile "$ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$ext"
}

issue processor dev-processor serverAuth "DNS:dev-processor,DNS:localhost,IP:127.0.0.1"
issue task-service-client task-service clientAuth
issue task-service task-service serverAuth "DNS:task-service,DNS:localhost,IP:127.0.0.1"
issue taskctl taskctl clientAuth
rm -f ca.srl
# Readable by the containers' users; the CA key stays with whoever made it.
chmod 644 ./*.pem
chmod 600 ca-key.pem
echo "certificates in $(pwd)" >&2
