# Packwell's production image: `docker compose up` builds it (see README, "Production setup").
#
# Stage 1 builds the release binary; stage 2 is a slim Debian with the binary, the rules and the
# templates, run as a non-root user.

FROM rust:1.95-bookworm AS builder

# The rdkafka crate compiles its bundled librdkafka: a C and a C++ compiler, make, and zlib's
# headers found through pkg-config (no cmake, no OpenSSL or SASL with the default features).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ make pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, in layers of their own: they are fetched and compiled (librdkafka takes
# minutes) against placeholder sources, so a change to Packwell's code rebuilds only Packwell.
# `benches/` comes along because Cargo.toml names its benchmarks.
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo fetch --locked \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/packwell-* target/release/deps/packwell-* \
       target/release/deps/libpackwell-*

# The real sources; the migrations are embedded into the binary at compile time.
COPY migrations ./migrations
COPY src ./src
# COPY keeps the files' modification times, which may be older than the placeholder build:
# touch them so that cargo sees the change.
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
    && cp target/release/packwell /usr/local/bin/packwell


FROM debian:bookworm-slim

# ca-certificates for TLS to e-mail providers; zlib, which librdkafka links.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin packwell

COPY --from=builder /usr/local/bin/packwell /usr/local/bin/packwell

WORKDIR /app
# The rules and templates the image starts with; docker-compose.yml mounts the repository's
# folders over them so that marketers' edits reach the running service.
COPY --chown=packwell:packwell rules ./rules
COPY --chown=packwell:packwell templates ./templates
# data/: the coupon key, and the SQLite store and e-mail outbox when no PostgreSQL or provider
# is configured. Created here, owned by the service's user, so that a new volume inherits both.
RUN mkdir -p /app/data && chown packwell:packwell /app/data
VOLUME ["/app/data"]

# In a container the API must listen beyond loopback (the default is 127.0.0.1:8080).
ENV PACKWELL_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 8080

USER packwell

# The slim image has no curl or wget: bash's /dev/tcp asks /healthz and wants a 200.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["packwell"]
CMD ["run"]
