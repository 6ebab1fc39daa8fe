# Vectra's image: `vectra --daemon` under tini, as a non-root user, its data on a volume, its settings from
# the environment only (there is no .env in the image). Two targets:
#   docker build -t vectra .                          the daemon (direct Socket.IO source)
#   docker build --target browser -t vectra-browser .   plus Debian's chromium for the CDP source
# BASE is any Debian bookworm image with python3 and venv: the official slim Python image by default;
# the tests build one locally with mmdebstrap (deploy/ci-setup.sh) since no registry is reachable there.
ARG BASE=python:3.11-slim-bookworm

# ---- build: the project as a wheel, installed with its dependencies into /opt/vectra ----
FROM ${BASE} AS build
# pip settings for a mirror or proxy, as build arguments: they never end up in the image.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/vectra
WORKDIR /src
# Dependencies first, from pyproject.toml alone: a change to the code does not install them again, and
# pip's cache (a build cache mount, never in the image) saves downloading them after a pyproject change.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/vectra/bin/pip install -q -r /tmp/requirements.txt
COPY core core
COPY vectra_cli vectra_cli
COPY vectra_tui vectra_tui
COPY themes themes
RUN /opt/vectra/bin/pip wheel -q --no-deps -w /wheels . \
    && /opt/vectra/bin/pip install -q --no-deps /wheels/vectra-*.whl

# ---- runtime: what the daemon runs on, everything but the project itself (a code change rebuilds none of it) ----
FROM ${BASE} AS runtime
# tini as PID 1 passes SIGTERM on to vectra and reaps what it leaves behind (the browser's children).
RUN command -v tini >/dev/null || { apt-get update -qq \
        && apt-get install -y -qq --no-install-recommends tini && rm -rf /var/lib/apt/lists/*; }
# The user is written directly: minimal bases have no useradd.
RUN echo 'vectra:x:10001:10001:Vectra:/var/lib/vectra:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'vectra:x:10001:' >> /etc/group \
    && mkdir -p /var/lib/vectra/data /var/lib/vectra/chrome \
    && chown -R 10001:10001 /var/lib/vectra
ENV PATH=/opt/vectra/bin:$PATH \
    HOME=/var/lib/vectra \
    PYTHONUNBUFFERED=1 \
    VECTRA_DATA_DIR=/var/lib/vectra/data \
    VECTRA_CHROME_PROFILE=/var/lib/vectra/chrome/rugs_bot \
    VECTRA_CHROME_HEADLESS=true
VOLUME ["/var/lib/vectra/data"]
USER 10001:10001
WORKDIR /var/lib/vectra
EXPOSE 8765 5556 5557
# `vectra health` exits 0 ok, 1 degraded, 2 down: anything but ok is unhealthy (Docker reserves 2).
HEALTHCHECK --interval=5s --timeout=6s --start-period=20s --retries=2 \
    CMD vectra health >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "vectra", "--daemon", "--log-json"]

# ---- daemon: what runs ----
FROM runtime AS daemon
COPY --from=build /opt/vectra /opt/vectra

# ---- browser: the daemon plus Debian's chromium, for VECTRA_SOURCE=cdp; the rugs_bot profile on a volume ----
# Chromium is installed before the project comes in, so a change to the code does not install it again.
FROM runtime AS browser
USER root
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends chromium fonts-liberation \
    && rm -rf /var/lib/apt/lists/*
# Debian's /usr/bin/chromium adds CHROMIUM_FLAGS. Chromium's own sandbox needs user namespaces, which
# container engines deny by default: the container is the sandbox here. /dev/shm is small in containers.
ENV VECTRA_CHROME_BINARY=/usr/bin/chromium \
    CHROMIUM_FLAGS="--no-sandbox --disable-dev-shm-usage"
VOLUME ["/var/lib/vectra/chrome"]
USER 10001:10001
COPY --from=build /opt/vectra /opt/vectra

# The default target is the daemon without a browser.
FROM daemon
