#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are on this machine.
# Installs Debian's `postgresql` package when they are missing and we are root.
# The test-suite (tests/conftest.py) starts its own throw-away cluster; nothing here
# starts a server.
set -euo pipefail
find_bin() {
  command -v pg_ctl 2>/dev/null && return 0
  ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 | grep . && return 0
  return 1
}
if find_bin >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "ensure-postgres: installing PostgreSQL from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  find_bin >/dev/null && exit 0
fi
if [ "${CI:-}" = "true" ]; then
  echo "ensure-postgres: PostgreSQL server binaries are missing and could not be installed" >&2
  exit 1
fi
echo "ensure-postgres: PostgreSQL not found (not root?); PostgreSQL tests will be skipped" >&2
