#!/bin/sh
# One-shot training job of the `train` service: make artifacts once, then do nothing on later runs.
#
#   MUGLE_ARTIFACTS  artifacts folder (default /data/artifacts, the shared volume)
#   MELON_DIR        a mounted real Melon dataset folder; when unset, a demo dataset is generated
#   DEMO_SONGS, DEMO_PLAYLISTS, DEMO_SEED   size and seed of the demo dataset
#   TRAIN_ARGS       extra `mugle train` options (e.g. "--tcae-steps 200")
#   FORCE_TRAIN=1    train a new version even when one is already served
#
# Compose may start this container more than once (podman restarts a stopped dependency), so it must be
# idempotent: an existing `current` version means there is nothing to do.
set -eu

ART="${MUGLE_ARTIFACTS:-/data/artifacts}"
mkdir -p "$ART"

if [ -s "$ART/current" ] && [ "${FORCE_TRAIN:-0}" != "1" ]; then
    echo "artifacts already present ($(cat "$ART/current")); nothing to train. Set FORCE_TRAIN=1 to retrain."
    exit 0
fi

if [ -n "${MELON_DIR:-}" ]; then
    if [ ! -f "$MELON_DIR/song_meta.json" ]; then
        echo "MELON_DIR=$MELON_DIR has no song_meta.json: mount the Melon dataset folder there" >&2
        exit 2
    fi
    DATA="$MELON_DIR"
    echo "training on the Melon dataset in $DATA"
else
    DATA="$(dirname "$ART")/demo-data"
    if [ ! -f "$DATA/.complete" ]; then
        # Generate into a temporary folder and rename, so an interrupted run never leaves half a dataset.
        rm -rf "$DATA.tmp"
        mugle demo-data --out "$DATA.tmp" --songs "${DEMO_SONGS:-3000}" --playlists "${DEMO_PLAYLISTS:-2000}" \
            --seed "${DEMO_SEED:-0}" --quiet
        touch "$DATA.tmp/.complete"
        rm -rf "$DATA"
        mv "$DATA.tmp" "$DATA"
    fi
    echo "training on the demo dataset in $DATA"
fi

# TRAIN_ARGS is split into words on purpose.
# shellcheck disable=SC2086
exec mugle train --data "$DATA" --out "$ART" --no-progress ${TRAIN_ARGS:-}
