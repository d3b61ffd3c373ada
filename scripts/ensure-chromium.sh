#!/usr/bin/env bash
# Make sure Debian's headless browser for the dashboard's browser tests is on this machine:
# `chromium` and `chromium-driver` (Selenium drives /usr/bin/chromedriver; no browser is
# ever downloaded). Installs them with apt-get when missing and we are root. Idempotent.
# Without them the browser tests are skipped, unless CI=true, where they fail.
set -euo pipefail
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
if have; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "ensure-chromium: installing chromium and chromium-driver from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  have && exit 0
fi
if [ "${CI:-}" = "true" ]; then
  echo "ensure-chromium: chromium / chromedriver are missing and could not be installed" >&2
  exit 1
fi
echo "ensure-chromium: chromium not found (not root?); browser tests will be skipped" >&2
