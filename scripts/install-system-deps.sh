#!/usr/bin/env bash
# System packages some tests need: PostgreSQL (the PostgreSQL state store's tests start a
# real server), Chromium and its driver (the dashboard's browser tests). Installed with
# apt-get when missing, only as root and only where apt-get exists. `make test` runs it; it
# never fails: the tests that need a missing package skip with the reason.
set -u
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup: not installing ${need[*]} (needs root and apt-get); their tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >&2; then
  echo "setup: apt-get could not install ${need[*]}; their tests will skip" >&2
fi
exit 0
