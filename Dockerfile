# The Task service's image: task-service (default command), dev-processor, taskctl, otlp-sink.
# Base images are build arguments so that machines with no registry can point them at local ones.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && cp target/release/task-service target/release/dev-processor target/release/taskctl target/release/otlp-sink /out/

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/ /usr/local/bin/
RUN mkdir -p /data/videos
WORKDIR /
ENV LOCAL_STORAGE_PATH=/data/videos
EXPOSE 50050 9464
CMD ["task-service"]
