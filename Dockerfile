# yolk: one image with the four static binaries (master, agent, worker, source) on
# scratch, running as uid 65532. Two ways to build it, both with the legacy builder:
#
#   make image                  the binaries are built on this host (make build:
#                               CGO_ENABLED=0, -trimpath), then copied by the first
#                               stage: `docker build --target prebuilt -t yolk:dev .`
#                               starts FROM scratch and so never pulls an image.
#   docker build -t yolk .      the last stage: builds the binaries in golang:1.26,
#                               for machines that reach a registry.
#
# No `# syntax=` line and nothing BuildKit-only, on purpose: BuildKit would pull the
# syntax image, and the machines without a registry have the legacy builder.
#
# scratch has no shell, no mkdir and no curl: /tmp (where each process puts its
# health socket, YOLK_HEALTH_SOCKET) is an empty directory copied in and owned by
# 65532, and the health checks are the binaries' own `healthcheck` subcommands.

FROM scratch AS prebuilt
COPY bin/master bin/agent bin/worker bin/source /
# bin/tmp is an empty directory that make image creates.
COPY --chown=65532:65532 bin/tmp /tmp
ENV YOLK_RUN_DIR=/tmp/yolk
USER 65532:65532
EXPOSE 7001
CMD ["/master"]

# For users with a registry: the same build as make build, inside golang:1.26.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ ./cmd/master ./cmd/agent ./cmd/worker ./cmd/source \
    && mkdir /out/tmp

FROM scratch
COPY --from=build /out/master /out/agent /out/worker /out/source /
COPY --from=build --chown=65532:65532 /out/tmp /tmp
ENV YOLK_RUN_DIR=/tmp/yolk
USER 65532:65532
EXPOSE 7001
CMD ["/master"]
