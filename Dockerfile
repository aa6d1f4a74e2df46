# The mesh's services, one target each:
#
#   docker build --target emulator -t entra-emulator .
#   docker build --target api      -t api-service .
#   docker build --target caller   -t caller-service .
#   docker build --target gateway  -t entra-gateway .
#   docker build --target reports  -t reports .       (the Python reports service of the demo)
#
# One file for them because they are one workspace with one Cargo.lock: the builder stage compiles
# the four binaries in a single cargo invocation, so building every target (as `docker compose up
# --build` does) compiles the workspace once and the other targets come from the layer cache. Each
# Rust target is a small Debian image holding one binary, run as an unprivileged user.
#
# Layer order, for the cache: cargo-chef turns the workspace's manifests and Cargo.lock into a
# recipe, and the dependencies are compiled from the recipe alone, so that layer survives every
# source edit; an edit recompiles only the workspace's own crates. The whole context is copied
# (minus .dockerignore), so a crate added to the workspace needs no change here. Only classic
# Dockerfile syntax is used: the classic builder (Debian's docker.io 20.10, docker-compose 1.29)
# and BuildKit both build it.
#
# The Rust version is rust-toolchain.toml's: change both together. No secret enters any image:
# the emulator's directory and every service's settings come from the environment and mounts at
# run time (docker-compose.yml); deploy/ is not even in the build context.

FROM rust:1.95.0-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG PACKAGES="-p entra-emulator -p api-service -p caller-service -p entra-gateway"
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked $PACKAGES --recipe-path recipe.json
COPY . .
# The release profile keeps line tables for profiling; the images drop them (about 60 MB a
# binary). Symbols stay, so a backtrace still names its functions.
RUN cargo build --release --locked $PACKAGES \
 && mkdir /out \
 && for bin in entra-emulator api-service caller-service entra-gateway; do \
      strip --strip-debug -o /out/$bin target/release/$bin; \
    done

# What the Rust images share. curl is for the health checks: none of the binaries can probe
# its own /healthz or /readyz yet. ca-certificates: the services trust the platform's roots
# (login.microsoftonline.com), plus an extra CA file when one is configured.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mesh \
 && useradd --system --uid 10001 --gid mesh --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin mesh \
 && install -d -o mesh -g mesh -m 0755 /var/lib/mesh-ca /var/lib/entra-emulator /var/lib/api-service
WORKDIR /var/lib
USER 10001:10001

FROM runtime AS emulator
# Listening on every interface is right inside a container; keys, CA and certificate go to
# /var/lib/entra-emulator (a volume), the CA certificate for clients to /var/lib/mesh-ca/ca.pem.
ENV EMULATOR__SERVER__HOST=0.0.0.0 \
    EMULATOR__DATA_DIR=/var/lib/entra-emulator \
    EMULATOR__SERVER__CA_CERT_OUT=/var/lib/mesh-ca/ca.pem
# Where `entra-emulator project-token` writes a projected service-account token in the demo (a
# volume a workload-identity caller mounts read-only, the path AKS uses): owned by the image's
# user, so that a fresh volume mounted here takes that ownership.
USER 0:0
RUN install -d -o mesh -g mesh -m 0755 /var/run/secrets/azure/tokens
USER 10001:10001
COPY --from=builder /out/entra-emulator /usr/local/bin/entra-emulator
EXPOSE 8443
ENTRYPOINT ["entra-emulator"]
CMD ["serve"]

FROM runtime AS api
ENV API__SERVER__HOST=0.0.0.0 \
    API__DATABASE__PATH=/var/lib/api-service/tasks.db
COPY --from=builder /out/api-service /usr/local/bin/api-service
EXPOSE 8080
ENTRYPOINT ["api-service"]
CMD ["serve"]

FROM runtime AS caller
ENV CALLER__SERVER__HOST=0.0.0.0
COPY --from=builder /out/caller-service /usr/local/bin/caller-service
EXPOSE 9090
ENTRYPOINT ["caller-service"]
CMD ["run"]

FROM runtime AS gateway
# Its routes and its upstream come from its --config file (deploy/emulator/gateway.toml in the
# demo); every key can also be set as GATEWAY__SECTION__KEY.
ENV GATEWAY__SERVER__HOST=0.0.0.0
COPY --from=builder /out/entra-gateway /usr/local/bin/entra-gateway
EXPOSE 8090
ENTRYPOINT ["entra-gateway"]
CMD ["serve"]

# The demo's Python programs need Python, not curl (their health checks are Python's own): a stage
# of their own rather than the runtime one. Each is one file on Python's standard library.
FROM debian:bookworm-slim AS python-app
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mesh \
 && useradd --system --uid 10001 --gid mesh --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin mesh

# The reports service: no token code (it trusts the X-Entra-* headers entra-gateway sets, and
# must be reachable only through it).
FROM python-app AS reports
COPY mesh/reports/reports.py /usr/local/lib/reports/reports.py
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["python3", "/usr/local/lib/reports/reports.py", "--host", "0.0.0.0", "--port", "8000"]

# The demo's inventory app: Python's standard library and one file, no token code. It shares the
# network namespace of a caller-service container running as its token sidecar (compose's
# `network_mode: service:…`, a Kubernetes pod's containers) and calls through 127.0.0.1:9091.
FROM python-app AS inventory
COPY mesh/apps/inventory.py /usr/local/lib/inventory/inventory.py
USER 10001:10001
ENTRYPOINT ["python3", "/usr/local/lib/inventory/inventory.py"]
