# syntax=docker/dockerfile:1
# The Roster image: the `roster` binary on a small Debian runtime, run as a non-root user. Built
# without the `dev` feature: no `roster dev`, no local control plane.
#
#   docker build -t roster:0.1.0 .
#
# The runtime is debian:bookworm-slim rather than distroless: the SAML code links libxmlsec1 and
# libxml2 (xmlsec's OpenSSL backend included), which a distroless image does not carry.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libclang-dev libxml2-dev libxmlsec1-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The caches keep crates and compiled dependencies between builds; the binary is copied out of
# the target cache, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin roster \
 && install -m 0755 target/release/roster /usr/local/bin/roster

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libxml2 libxmlsec1 libxmlsec1-openssl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 roster \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin roster
COPY --from=build /usr/local/bin/roster /usr/local/bin/roster
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/roster"]
CMD ["run"]
