#!/usr/bin/env bash
# Third-party LLM servers the tests talk to (tests/llm/test_third_party_servers.py):
# LiteLLM's proxy with mock models and the llmock chaos server, each in its own virtualenv
# under .venv-servers/ (their pins clash with ours), from the package registry. `make test`
# runs it; it never fails: without them, those tests skip with the reason.
# `install-llm-servers.sh bench` adds the peers only `make bench` compares against
# (bespokelabs-curator), which the tests do not need.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
root=.venv-servers
install() {
  local name=$1 spec=$2
  [ -x "$root/$name/bin/python" ] && [ -e "$root/$name/.installed" ] && return 0
  if ! { "$PYTHON" -m venv "$root/$name" \
      && "$root/$name/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"; } >&2; then
    echo "setup: could not install $spec into $root/$name; its tests will skip" >&2
    rm -rf "${root:?}/$name"
    return 0
  fi
  touch "$root/$name/.installed"
}
install litellm 'litellm[proxy]==1.106.2'
install llmock 'llmock==0.2.2'
if [ "${1:-}" = bench ]; then
  install curator 'bespokelabs-curator==0.1.31'
fi
exit 0
