# syntax=docker/dockerfile:1
# Multi-stage build: compile with the full toolchain, ship a small runtime image.
#   docker build -t paygate .
#   docker run -p 8080:8080 -p 127.0.0.1:9090:9090 --add-host=host.docker.internal:host-gateway \
#     -e PAYGATE_JWT_SECRET -e STRIPE_WEBHOOK_SECRET -e PAYGATE_ADMIN_TOKEN \
#     -e PAYGATE_UPSTREAM_URL=http://host.docker.internal:8000 paygate
FROM rust:1-bookworm AS build
WORKDIR /src
# The image carries no debug info (the binary: about 14 MB instead of 73); Cargo.toml keeps
# `debug = 1` for profiling local builds.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo

# Dependencies first, in a layer of their own: it is rebuilt only when the
# manifests change, not on every source edit. The bench and example files are
# copied because the manifest names them (they are not compiled here); the
# crate sources are empty stand-ins.
COPY Cargo.toml Cargo.lock ./
COPY testkit/Cargo.toml testkit/Cargo.toml
COPY benches ./benches
COPY examples ./examples
RUN mkdir -p src testkit/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs testkit/src/lib.rs \
    && cargo build --release --locked --bin paygate \
    && rm -rf src testkit/src

# The real sources. `touch`: COPY keeps the files' own times, which may be
# older than the stand-ins' build, and cargo would then skip the rebuild.
COPY src ./src
COPY testkit/src ./testkit/src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin paygate

FROM debian:bookworm-slim
# CA roots for https JWKS / Stripe API calls. Not version-pinned: the roots
# should be the newest the release ships.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home paygate
COPY --from=build /src/target/release/paygate /usr/local/bin/paygate
# Listens on 0.0.0.0:8080 (public) and 0.0.0.0:9090 (admin: metrics, probes);
# secrets from the environment (the file lists them).
COPY deploy/container/paygate.toml /etc/paygate/paygate.toml
USER 10001:10001
ENV PAYGATE_CONFIG=/etc/paygate/paygate.toml
EXPOSE 8080 9090
# No curl in the image: the binary asks its own admin listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["paygate", "healthcheck", "--timeout", "2s"]
# SIGTERM drains in-flight requests for server.shutdown_grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["paygate"]
CMD ["serve"]
