# Build stage: the release binary (migrations are embedded in it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# Run stage: just the binary.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 analytics
COPY --from=build /src/target/release/analytics /usr/local/bin/analytics
USER analytics
EXPOSE 8080
ENTRYPOINT ["analytics"]
CMD ["serve"]
