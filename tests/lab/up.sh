#!/usr/bin/env bash
# Bring up the local lab: Docker engine, the hello-world and registry:2 images, SSH target.
# Idempotent: a second run changes nothing and takes about a second.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/common.sh"
lab_need_root

bash "$here/engine.sh"
bash "$here/images.sh"
bash "$here/target.sh" up

cat <<SUMMARY
lab up:
  ssh target   root|deploy|nopass @ $LAB_SSH_HOST port $LAB_SSH_PORT
  key          $LAB_SSH_KEY
  known_hosts  $LAB_SSH_KNOWN_HOSTS
  password     $LAB_DIR/client/deploy.password (user deploy; sudo asks for it; nopass has NOPASSWD sudo)
  try          ssh -i $LAB_SSH_KEY -o UserKnownHostsFile=$LAB_SSH_KNOWN_HOSTS -p $LAB_SSH_PORT root@$LAB_SSH_HOST docker version
SUMMARY
