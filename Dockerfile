# nss container image: a drop-in for the Go `nats-streaming` image.
#
#   docker build -t nss .
#   docker run -p 4222:4222 -p 8222:8222 nss                      # MEMORY store
#   docker run -p 4222:4222 -p 8222:8222 -v nss-data:/data nss \
#       -p 4222 -m 8222 -store file -dir /data/store              # FILE store
#
# Behind a proxy or a private package index, give pip its configuration and
# CA bundle as build secrets; they are mounted for the install step only and
# never land in a layer:
#   docker build --secret id=pipconf,src=pip.conf \
#                --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt .
#
# BASE must be a Debian-like image with python3 (>= 3.11, with venv) and
# useradd; both stages use it so that the venv's interpreter is the same one.
# The default is the official slim image of the Python and Debian releases
# the image test builds on (Debian bookworm's python3 is 3.11).
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
# binutils' strip: the wheels' C extensions carry debug info, 14 MB of the
# venv that a server never uses. gcc (and the Python headers where the base
# lacks them) build nss's compiled hot path; they stay in this stage.
RUN set -eu; \
    apt-get update; \
    pkgs="binutils gcc libc6-dev"; \
    python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
        || pkgs="$pkgs python3-dev"; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/nss
COPY pyproject.toml setup.py setup.cfg MANIFEST.in README.md LICENSE CHANGELOG.md /src/
COPY nss /src/nss
# pip, setuptools and wheel only serve the install: dropping them from the
# venv keeps ~15 MB out of the image.
RUN --mount=type=secret,id=pipconf --mount=type=secret,id=cacert \
    set -eu; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    /opt/nss/bin/pip install /src; \
    /opt/nss/bin/python -m pip uninstall -y -q pip setuptools wheel; \
    find /opt/nss -name '*.so*' -type f -exec strip --strip-unneeded {} +; \
    /opt/nss/bin/nss --version; \
    /opt/nss/bin/python -c 'import nss.hot, sys; sys.exit(not nss.hot.COMPILED)' \
        || { echo "nss: the compiled hot path was not built" >&2; exit 1; }

FROM ${BASE}
ARG NSS_UID=1000
ARG NSS_GID=1000
LABEL org.opencontainers.image.title="nss" \
      org.opencontainers.image.description="NATS Streaming (STAN) server in Python, a drop-in for nats-streaming-server" \
      org.opencontainers.image.licenses="Apache-2.0"
# /data is the volume the FILE store (and log/pid files) go to; the server
# user owns it so that a fresh named volume is writable without root.
# /nats-streaming-server is the Go image's binary path, for compose files
# that name it as their entrypoint.
RUN set -eu; \
    groupadd --gid "${NSS_GID}" nss; \
    useradd --uid "${NSS_UID}" --gid nss --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin nss; \
    mkdir -p /data /etc/nss; \
    chown nss:nss /data; \
    chmod 0750 /data; \
    ln -s /opt/nss/bin/nss /nats-streaming-server
COPY --from=build /opt/nss /opt/nss
COPY container/nss-healthcheck /opt/nss/bin/nss-healthcheck
ENV PATH=/opt/nss/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER nss:nss
WORKDIR /data
VOLUME /data
EXPOSE 4222 8222
# nss is PID 1: it handles SIGTERM/SIGINT itself (graceful stop, exit 0)
# and reaps its nats-server child.
STOPSIGNAL SIGTERM
# Reads the monitoring port from the server's own command line and config
# file; an FT standby counts as healthy (it is ready to take over).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/nss/bin/python", "/opt/nss/bin/nss-healthcheck"]
ENTRYPOINT ["/opt/nss/bin/nss"]
CMD ["-m", "8222"]
