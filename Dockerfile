# syntax=docker/dockerfile:1
# VisualThinker service image.
#   docker build -t visualthinker .                          CPU image (embedded model inside)
#   docker build -t visualthinker:gpu --target gpu .         CUDA image: onnxruntime-node's CUDA
#                                                             provider libraries and a PyTorch runtime
#                                                             for trainer/. The trainer uses the GPU;
#                                                             the service's engine opens its sessions on
#                                                             the CPU provider unless EXECUTION_PROVIDERS
#                                                             names cuda (src/engine/onnx/ort.ts).
ARG NODE_VERSION=20

# --- build: compile TypeScript ----------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Node's headers live under /usr/local in these images (.npmrc's nodedir=/usr is for Debian's node).
ENV npm_config_nodedir=/usr/local
RUN npm ci --no-fund --no-audit
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- gpu: CUDA for the trainer's PyTorch; onnxruntime-node's CUDA provider (EXECUTION_PROVIDERS=cuda) ----
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS gpu
ARG NODE_MAJOR=20
ENV NODE_ENV=production PORT=8080 STATE_DIR=/var/lib/visualthinker/state DATA_DIR=/var/lib/visualthinker/data
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg tini python3 python3-venv python3-pip make g++ \
 && curl -fsSL https://deb.nodesource.com/setup_${NODE_MAJOR}.x | bash - \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# onnxruntime-node's CUDA execution provider (libonnxruntime_providers_cuda.so, _shared, _tensorrt)
# is not in the npm package: its install script fetches it from NuGet (Microsoft.ML.OnnxRuntime.Gpu.Linux)
# unless told to skip, which .npmrc does for offline development. The script reads the environment
# variable ONNXRUNTIME_NODE_INSTALL before npm's config (script/install-utils.js), so the variable
# wins over .npmrc's skip whichever npm runs it; cuda12 matches the CUDA 12 base image. Then the
# libraries are checked, so a download that did not happen fails the build here and not at the
# first EXECUTION_PROVIDERS=cuda start. linux/x64 only (the script has no CUDA build for arm64).
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci --omit=dev --no-fund --no-audit \
 && for lib in libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so libonnxruntime_providers_tensorrt.so; do \
      test -s "node_modules/onnxruntime-node/bin/napi-v6/linux/x64/$lib" || { echo "onnxruntime-node: $lib was not installed" >&2; exit 1; }; \
    done \
 && npm cache clean --force
COPY requirements.txt constraints.txt ./
RUN python3 -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir torch==2.11.0 -r requirements.txt -c constraints.txt
COPY --from=build /app/dist ./dist
COPY trainer ./trainer
COPY models ./models
COPY k8s/training-job.yaml ./k8s/training-job.yaml
RUN useradd --create-home --uid 10001 app && mkdir -p /var/lib/visualthinker/state /var/lib/visualthinker/data \
 && chown -R app:app /var/lib/visualthinker
USER app
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=300s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server/main.js"]

# --- runtime (CPU) ----------------------------------------------------------------------------
# The last stage: what `docker build .` without --target produces.
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production PORT=8080 STATE_DIR=/var/lib/visualthinker/state DATA_DIR=/var/lib/visualthinker/data \
    npm_config_nodedir=/usr/local
# tini forwards SIGTERM to node (graceful drain) and reaps children (trainer processes).
# better-sqlite3 compiles against Node's headers; the build tools are removed in the same layer.
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini python3 make g++ \
 && npm ci --omit=dev --no-fund --no-audit \
 && npm cache clean --force \
 && apt-get purge -y python3 make g++ && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
COPY --from=build /app/dist ./dist
COPY models ./models
# Template of the trainer Jobs (TRAIN_BACKEND=kubernetes).
COPY k8s/training-job.yaml ./k8s/training-job.yaml
RUN mkdir -p /var/lib/visualthinker/state /var/lib/visualthinker/data && chown -R node:node /var/lib/visualthinker
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server/main.js"]
