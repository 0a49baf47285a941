#!/usr/bin/env bash
# The browser build's test: installs headless Chromium and its WebDriver when missing
# (Debian's chromium and chromium-driver), builds web/pkg (web/build.sh) and the release
# binary, then checks the page's probabilities against `lskbb predict --json`
# (web/e2e.py). `bash .ci/run` runs it after `cargo test --release`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "web/test.sh: needs Chromium and ChromeDriver at /usr/bin/chromium and /usr/bin/chromedriver" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "web/test.sh: installing chromium and chromium-driver" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
bash web/build.sh
cargo build --quiet --release
python3 web/e2e.py "$@"
