#!/usr/bin/env bash
# The floor: the tutorial's steps, with the runbook's choices (ECDSA P-256, bcrypt cost 10,
# host-mode port, CA trusted in certs.d), as one plain script run over one SSH session on the
# local lab target, from "Docker installed, no swarm" to a verified push and pull.
# Read on standard input by `bash -s`; the first line sets PW (a throw-away password).
set -euo pipefail
W=/home/docker
R=localhost:5000
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
mkdir -p "$W/certs" "$W/auth"
chmod 700 "$W/certs" "$W/auth"
cd "$W"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
  -keyout certs/localhost.key -x509 -days 365 -out certs/localhost.crt -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
htpasswd -iBn -C 10 admin <<<"$PW" > auth/htpasswd
mkdir -p "/etc/docker/certs.d/$R"
cp certs/localhost.crt "/etc/docker/certs.d/$R/ca.crt"
cat > docker-compose.yml <<'YAML'
version: "3.8"
services:
  registry:
    image: registry:2
    ports: [{target: 5000, published: 5000, protocol: tcp, mode: host}]
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
      restart_policy: {condition: on-failure}
      placement: {constraints: [node.role == manager]}
    environment:
      REGISTRY_HTTP_TLS_CERTIFICATE: /certs/localhost.crt
      REGISTRY_HTTP_TLS_KEY: /certs/localhost.key
      REGISTRY_AUTH: htpasswd
      REGISTRY_AUTH_HTPASSWD_PATH: /auth/htpasswd
      REGISTRY_AUTH_HTPASSWD_REALM: Registry Realm
    volumes: [registry:/var/lib/registry, /home/docker/certs:/certs, /home/docker/auth:/auth]
    networks: [manager]
volumes: {registry: {}}
networks: {manager: {driver: overlay}}
YAML
# Right after swarm init the stack's network is sometimes not yet found: try again.
for try in 1 2 3; do docker stack deploy -c docker-compose.yml manager >/dev/null && break; sleep 1; done
until curl -sf -o /dev/null --cacert certs/localhost.crt -u "admin:$PW" "https://$R/v2/"; do sleep 0.2; done
docker run --rm hello-world >/dev/null
docker tag hello-world "$R/hello-world"
export DOCKER_CONFIG=$(mktemp -d)
docker login -u admin --password-stdin "$R" <<<"$PW" >/dev/null
docker push "$R/hello-world" >/dev/null
docker image rm hello-world "$R/hello-world" >/dev/null
docker pull "$R/hello-world" >/dev/null
docker tag "$R/hello-world" hello-world
docker run --rm "$R/hello-world" >/dev/null
rm -rf "$DOCKER_CONFIG"
echo floor done
