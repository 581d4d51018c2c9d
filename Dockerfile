# syntax=docker/dockerfile:1
# Multi-stage build: pg_query_go needs cgo, so build with gcc and ship the
# binary on a slim glibc base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/pgstripe ./cmd/pgstripe

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 pgstripe
COPY --from=build /out/pgstripe /usr/local/bin/pgstripe
USER pgstripe
# Inside a container loopback is unreachable from outside: listen on every
# interface of the container, and publish the ports with care.
ENV PGSTRIPE_LISTEN=0.0.0.0:6543 PGSTRIPE_METRICS_LISTEN=0.0.0.0:9464
EXPOSE 6543 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["pgstripe"]
CMD ["serve"]
