#!/usr/bin/env bash
# Writes deploy/postgres.env and deploy/berth.env for compose.yaml with a
# fresh database password and secret key. Refuses to overwrite them: the key
# must stay the one that encrypted the stored secrets.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
for f in postgres.env berth.env; do
  if [ -e "$f" ]; then
    echo "deploy/$f exists; not overwriting (delete it only with the database)" >&2
    exit 1
  fi
done
password=$(openssl rand -hex 24)
printf 'POSTGRES_PASSWORD=%s\n' "$password" > postgres.env
printf 'BERTH_SECRET_KEY=%s\nBERTH_DATABASE_URL=postgres://berth:%s@postgres:5432/berth\n' \
  "$(openssl rand -base64 32)" "$password" > berth.env
echo "wrote deploy/postgres.env and deploy/berth.env (mode 0600); back up BERTH_SECRET_KEY"
