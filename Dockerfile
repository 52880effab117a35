# Seawall worker image: `seawall` (the worker and store tooling) and `seawall-demo` (the
# sample flow's downstream, producer and report).
#   docker build -t seawall .
#   docker run -v $PWD/seawall.toml:/etc/seawall/seawall.toml -p 9464:9464 seawall

# --- build ---------------------------------------------------------------------------
FROM rust:1-bookworm AS build
# rdkafka builds librdkafka and OpenSSL from source: it needs cmake (a C toolchain, perl
# and make are in the image).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/seawall target/release/seawall-demo /out/

# --- run -----------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system seawall \
 && useradd --system --gid seawall --home-dir /var/lib/seawall --shell /usr/sbin/nologin seawall \
 && mkdir -p /var/lib/seawall /etc/seawall \
 && chown seawall:seawall /var/lib/seawall
COPY --from=build /out/seawall /out/seawall-demo /usr/local/bin/
# No config is baked in: mount yours at /etc/seawall/seawall.toml (examples/ has some;
# the admin listener must be on 0.0.0.0 to be reachable from outside the container).
USER seawall
WORKDIR /var/lib/seawall
# The idempotency stores (`[store] path`): keep them across restarts.
VOLUME /var/lib/seawall
# The admin listener: /metrics, /healthz, /readyz.
EXPOSE 9464
ENTRYPOINT ["seawall"]
CMD ["run", "--config", "/etc/seawall/seawall.toml"]
