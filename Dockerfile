# The Mémoire image: the `memoire` command, run as an unprivileged user.
#
#   docker build -t memoire .
#   docker run --rm -p 8080:8080 -e MEMOIRE_DATABASE_URL=... -e MEMOIRE_REDIS_URL=... memoire          # serve
#   docker run --rm -e MEMOIRE_DATABASE_URL=... -e MEMOIRE_REDIS_URL=... memoire worker
#   docker run --rm -e MEMOIRE_DATABASE_URL=... memoire migrate
#
# docker-compose.yml runs the whole stack from this image.
#
# Two stages: the first exports all-MiniLM-L6-v2 to ONNX (it needs torch); the image itself only runs the
# export, with onnxruntime, and carries no torch.

FROM python:3.11-slim AS export

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEMOIRE_EMBEDDINGS_MODEL_DIR=/opt/memoire/models

WORKDIR /src

# torch comes from PyTorch's CPU index first: from PyPI, the pinned version would pull gigabytes of CUDA
# packages. The export extra's exact pin then finds it already installed.
COPY pyproject.toml README.md* ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; open('/tmp/requirements.txt', 'w').write(chr(10).join(p['dependencies'] + p['optional-dependencies']['server'] + p['optional-dependencies']['export']) + chr(10))" \
    && pip install -r /tmp/requirements.txt

COPY memoire ./memoire
COPY stack ./stack
COPY proxy ./proxy
COPY memory ./memory
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-deps . \
    && memoire models prepare \
    && chmod -R a+rX /opt/memoire


FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Dependencies first, read from pyproject.toml, so this layer is rebuilt only when pyproject.toml changes.
# The SDK's and the server extra's: neither the test nor the export extras are installed.
COPY pyproject.toml README.md* ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; deps = p['dependencies'] + p['optional-dependencies']['server']; open('/tmp/requirements.txt', 'w').write(chr(10).join(deps) + chr(10))" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself: setuptools needs every package directory present to build it.
COPY memoire ./memoire
COPY stack ./stack
COPY proxy ./proxy
COPY memory ./memory
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-deps . \
    && pip check

# The exported embedding model, ready at start.
COPY --from=export /opt/memoire/models /opt/memoire/models

# An unprivileged user, and the state directory it owns (the exchange spool lives there; mount a volume).
RUN groupadd --system --gid 10001 memoire \
    && useradd --system --uid 10001 --gid memoire --home-dir /home/memoire --create-home \
       --shell /usr/sbin/nologin memoire \
    && mkdir -p /data \
    && chown memoire:memoire /data

# Listen on every interface inside the container (the default, 127.0.0.1, is unreachable from outside it).
ENV MEMOIRE_SERVER_HOST=0.0.0.0 \
    MEMOIRE_SERVER_DATA_DIR=/data \
    MEMOIRE_EMBEDDINGS_MODEL_DIR=/opt/memoire/models

WORKDIR /data
USER 10001:10001
EXPOSE 8080

# Liveness of the API. Slim images have no curl; urlopen raises (non-zero exit) on anything but 2xx.
# Services that run `worker` or `migrate` from this image override or disable it (see docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MEMOIRE_SERVER_PORT', '8080') + '/healthz', timeout=4)"]

ENTRYPOINT ["memoire"]
CMD ["serve"]
