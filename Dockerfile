# The one pdp image: every Deployment runs it with different arguments (`pdp gateway`,
# `pdp serve planning`, `pdp migrate`). Build with `make image`.

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pdp \
 && install -D target/release/pdp /out/pdp

# Runtime: the binary, libpq and CA roots; no compiler, no package manager in use, no shell needed.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/pdp /usr/local/bin/pdp
# 65532: the conventional non-root "nonroot" user; the chart runs it read-only.
USER 65532:65532
ENV PDP_MODE=cluster
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/pdp"]
CMD ["--help"]
