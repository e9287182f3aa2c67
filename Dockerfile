# Mugle images. Targets:
#   train        CPU torch + gensim: `mugle demo-data` and `mugle train` (the compose `train` service)
#   serve        slim API + page: no torch, no gensim (the compose `api` service)
#   serve-audio  serve + CPU torch, for POST /recommend/audio (audio queries embed the clip with TCAE)
#   web          nginx with the page and deploy/default.conf (the compose `web` service)
#
# Air-gapped torch: put a CPU wheel (torch-2.13.0+cpu-cp311-*.whl) in deploy/wheels/ before building;
# without one, torch comes from TORCH_INDEX_URL (the PyTorch CPU index).
# Behind a TLS-intercepting proxy: --build-arg PIP_CERT=/path/in/build/to/ca.crt (mount the file).

ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim
ARG NGINX_IMAGE=docker.io/library/nginx:stable

# -- common base: a venv (works on the official image and on a Debian-python stand-in alike) ---------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PATH=/opt/venv/bin:$PATH \
    MUGLE_ARTIFACTS=/data/artifacts
RUN python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin mugle \
 && mkdir -p /data/artifacts \
 && chown -R mugle:mugle /data
WORKDIR /opt/mugle

# -- serving dependencies only, so code edits do not reinstall them -----------------------------------
FROM base AS serve-deps
ARG PIP_CERT
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# -- serve: the slim API image ----------------------------------------------------------------------
FROM serve-deps AS serve
ARG PIP_CERT
# Only what serving runs: the service, the shared package and the `mugle` command (its training and
# evaluation subcommands import their packages lazily, and those are not in this image).
COPY mugle_core ./mugle_core
COPY app ./app
COPY mugle_cli ./mugle_cli
COPY README.md ./
# Editable: the source tree in /opt/mugle is the installed package, subpackages (app.routes) and the
# page (app/static) included, whatever pyproject.toml's package list names.
RUN pip install --no-deps -e .
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["mugle", "serve", "--host", "0.0.0.0", "--port", "8000"]

# -- CPU torch, from a local wheel when one is given --------------------------------------------------
FROM serve-deps AS torch
ARG PIP_CERT
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY deploy/wheels/ /tmp/wheels/
# The wheel's own dependencies (sympy, networkx, ...) still come from the package index; the version
# is pinned by the wheel or by TORCH_VERSION.
# hadolint ignore=DL3013
RUN set -e; \
    wheel=""; \
    for w in /tmp/wheels/torch-"${TORCH_VERSION}"*-cp311-*.whl; do [ -f "$w" ] && wheel="$w"; done; \
    if [ -n "$wheel" ]; then \
        echo "installing torch from local wheel $wheel"; \
        pip install "$wheel"; \
    else \
        echo "no local torch wheel: using $TORCH_INDEX_URL"; \
        pip install --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}"; \
    fi; \
    rm -rf /tmp/wheels; \
    python -c "import torch; assert not torch.version.cuda, 'expected a CPU build of torch'; print('torch', torch.__version__)"

# -- serve-audio: the API with torch for audio queries ------------------------------------------------
FROM torch AS serve-audio
ARG PIP_CERT
# As serve, plus the model networks that embed an uploaded clip.
COPY mugle_core ./mugle_core
COPY mugle_nets ./mugle_nets
COPY app ./app
COPY mugle_cli ./mugle_cli
COPY README.md ./
# Editable: the source tree in /opt/mugle is the installed package, subpackages (app.routes) and the
# page (app/static) included, whatever pyproject.toml's package list names.
RUN pip install --no-deps -e .
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["mugle", "serve", "--host", "0.0.0.0", "--port", "8000"]

# -- train: demo data + training ----------------------------------------------------------------------
FROM torch AS train
ARG PIP_CERT
COPY pyproject.toml ./
COPY mugle_core ./mugle_core
COPY mugle_nets ./mugle_nets
COPY app ./app
COPY training ./training
COPY evaluation ./evaluation
COPY mugle_cli ./mugle_cli
COPY README.md ./
# Versions are pinned by pyproject.toml (and torch by the stage above).
# hadolint ignore=DL3013
RUN pip install -e ".[train]"
COPY deploy/train.sh /usr/local/bin/mugle-train-once
USER 10001:10001
# A one-shot job: healthy while it runs, and it exits when done.
HEALTHCHECK NONE
CMD ["mugle-train-once"]

# -- web: nginx with the page and the proxy configuration ---------------------------------------------
FROM ${NGINX_IMAGE} AS web
COPY deploy/default.conf /etc/nginx/conf.d/default.conf
COPY app/static/ /usr/share/nginx/html/
EXPOSE 80
