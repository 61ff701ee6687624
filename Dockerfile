# syntax=docker/dockerfile:1
#
# The `tenantry` binary in a small non-root image. One image for all five services:
#   docker build -t tenantry .
#   docker run --rm tenantry serve membership        # CMD defaults to `serve customer-registry`
#   docker run --rm tenantry migrate invitation --database-url postgres://…
#
# Stages: chef (cargo-chef installed) → planner (recipe.json: the dependency graph only) →
# builder (dependencies cooked in their own layer, cached until Cargo.toml/Cargo.lock change;
# then the workspace) → runtime (debian bookworm-slim, CA certificates, the binary, uid 10001).
# No protoc is needed: crates/proto compiles the .proto files with protox.

# At least the workspace rust-version in Cargo.toml: the highest in Cargo.lock (sqlx 0.9, 1.94).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: rebuilt only when the recipe (manifests and lock file) changes.
RUN cargo chef cook --release --locked -p tenantry-cli --bin tenantry --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p tenantry-cli --bin tenantry \
 && install -D -m 0755 target/release/tenantry /out/tenantry

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# CA certificates: rustls-native-certs reads them for JWKS over HTTPS, amqps:// and smtps://.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tenantry \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tenantry --create-home \
      --shell /usr/sbin/nologin tenantry
COPY --from=builder /out/tenantry /usr/local/bin/tenantry
# A numeric user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/tenantry
ENV TENANTRY_LISTEN=0.0.0.0:50051 \
    TENANTRY_ADMIN_LISTEN=0.0.0.0:9090 \
    TENANTRY_LOG_FORMAT=json
# 50051: gRPC (services, health, reflection); 9090: admin HTTP (/metrics, /livez, /readyz).
EXPOSE 50051 9090 8080
ENTRYPOINT ["tenantry"]
CMD ["serve", "customer-registry"]
