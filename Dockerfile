# The all-in-one server (`local`: every route group in one process) for platforms other than
# Lambda: Kubernetes (deploy/k8s/), ECS or Cloud Run, and docker compose's `app` profile. The same
# routers as the functions, built from the same workspace.
#
#   docker build --target api -t backend-api .
#
# Targets:
#   chef, planner, deps, builder   the build: dependencies are compiled in a layer of their own
#                                  (cargo-chef), rebuilt only when Cargo.toml or Cargo.lock change
#   api                            the server, plus `db` for migrations (`db up`, run once per
#                                  release as a job or init container: the server applies none
#                                  outside development and test)
#
# The Fargate backup image (infra/backup/Dockerfile) takes the same Debian release and the same
# migrations; it is built from cargo-lambda's arm64 `db` instead, so that an x86 builder needs no
# emulation and the deploy pipeline ships the binary it tested.

ARG RUST=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST}-slim-${DEBIAN} AS chef
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /src

# The dependency graph alone (manifests and the lock file), so that a change to our code leaves
# the next stage's cache intact.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS deps
COPY --from=planner /src/recipe.json recipe.json
# The Swagger UI files the API reference's build swaps in (.cargo/config.toml): that dependency's
# build script runs here, with the dependencies.
COPY .cargo .cargo
COPY functions/health/swagger-ui functions/health/swagger-ui
RUN cargo chef cook --release --recipe-path recipe.json --bin local --bin db

FROM deps AS builder
COPY . .
RUN cargo build --release --locked -p local --bin local --bin db

# distroless: glibc, libgcc, CA roots and a passwd entry for `nonroot`; no shell, no package
# manager. The probe is `local healthcheck`, since there is no curl either.
FROM gcr.io/distroless/cc-debian12:nonroot AS api
COPY --from=builder /src/target/release/local /usr/local/bin/local
COPY --from=builder /src/target/release/db /usr/local/bin/db
COPY migrations/ /opt/app/migrations/
# Listens on every interface of the container; everything else comes from the platform's
# environment (README "Configuration"). APP_ENV=production needs real secrets: JWT_SECRET and
# the database URL, or their Secrets Manager ARNs.
ENV APP_ENV=production \
    BIND_ADDRESS=0.0.0.0 \
    PORT=3000 \
    MIGRATIONS_DIR=/opt/app/migrations
# 65532 is distroless's `nonroot`.
USER 65532:65532
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/local", "healthcheck"]
# `local` finishes the requests in flight on SIGTERM, then exits 0 (tests/it/shutdown.rs). It is
# PID 1 here, so the exec form matters: a shell in between would not pass the signal on.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/local"]
