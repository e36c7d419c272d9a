# Builds the plumb controller images. One build stage, one small final stage per controller:
#   docker build --target source-controller -t plumb/source-controller .
#   docker build --target render-controller -t plumb/render-controller .
#   docker build --target sync-controller   -t plumb/sync-controller .
#   docker build --target plumb             -t plumb/plumb .   (the CLI; `plumb controllers` runs all three)

# Helm, built from its pinned Go module with the release's version stamps (crates/helm/go):
# the render controller renders charts with it.
FROM golang:1.26-bookworm AS helm
WORKDIR /src/crates/helm/go
COPY crates/helm/go/ .
COPY e2e/lib/ /src/e2e/lib/
RUN --mount=type=cache,target=/root/go/pkg/mod \
    PLUMB_CACHE_DIR=/cache bash build.sh >/dev/null \
    && cp /cache/helm-*/bin/helm /usr/local/bin/helm

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && for b in plumb-source-controller plumb-render-controller plumb-sync-controller plumb plumb-cli; do \
         if [ -f target/release/$b ]; then cp target/release/$b /out/; fi; \
       done

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
USER 65532:65532

FROM runtime AS source-controller
COPY --from=build /out/plumb-source-controller /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/plumb-source-controller"]

FROM runtime AS render-controller
COPY --from=build /out/plumb-render-controller /usr/local/bin/
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
ENV PLUMB_HELM=/usr/local/bin/helm
ENTRYPOINT ["/usr/local/bin/plumb-render-controller"]

FROM runtime AS sync-controller
COPY --from=build /out/plumb-sync-controller /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/plumb-sync-controller"]

FROM runtime AS plumb
COPY --from=build /out/plumb /out/plumb-cli /usr/local/bin/
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
ENV PLUMB_HELM=/usr/local/bin/helm
ENTRYPOINT ["/usr/local/bin/plumb"]
