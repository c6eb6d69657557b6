# Multi-stage build: compile with the full toolchain, ship a small runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin paygate

FROM debian:bookworm-slim
# CA roots for https JWKS / Stripe API calls.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home paygate
COPY --from=build /src/target/release/paygate /usr/local/bin/paygate
COPY config/paygate.toml /etc/paygate/paygate.toml
USER 10001
ENV PAYGATE_CONFIG=/etc/paygate/paygate.toml
EXPOSE 8080 9090
ENTRYPOINT ["paygate"]
CMD ["serve"]
