#!/usr/bin/env bash
# Installs the Debian packages the browser and nginx tests use, when missing and when we are root.
set -u
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -d /usr/share/fonts/truetype/nanum ] || need+=(fonts-nanum)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: cannot install ${need[*]} (not root or no apt-get); their tests will be skipped" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "system-deps: apt-get failed; the browser/nginx tests will be skipped" >&2
# Debian's nginx package starts a daemon on port 80 on install; the tests run their own.
command -v nginx >/dev/null && (nginx -s stop 2>/dev/null || true)
exit 0
