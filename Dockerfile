# yolk: one image with the static multi-call binary /yolk, linked as /master, /agent,
# /worker and /source, and the real /nats-server (for compose.fleet.yaml's NATS
# cluster), on scratch, running as uid 65532. Two ways to build it, both with the legacy builder:
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
# bin/image: yolk and its hard links, and nats-server, as make image makes them. Copied as one
# directory, the links stay links (a file each, or a symlink, would be a copy).
COPY bin/image/ /
# bin/image-tmp: an empty directory (scratch has no mkdir).
COPY --chown=65532:65532 bin/image-tmp /tmp
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
RUN CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/yolkgo/yolk/internal/command/master.version=${VERSION}" \
        -o /out/yolk ./cmd/yolk \
    && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/nats-server github.com/nats-io/nats-server/v2 \
    && mkdir /tmp/empty && cd /out && for c in master agent worker source; do ln yolk $c; done

FROM scratch
COPY --from=build /out/ /
COPY --from=build --chown=65532:65532 /tmp/empty /tmp
ENV YOLK_RUN_DIR=/tmp/yolk
USER 65532:65532
EXPOSE 7001
CMD ["/master"]
