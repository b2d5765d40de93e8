# The Mémoire image: the `memoire` command, run as an unprivileged user.
#
#   docker build -t memoire .
#   docker run --rm -p 8080:8080 -e MEMOIRE_DATABASE_URL=... -e MEMOIRE_REDIS_URL=... memoire          # serve
#   docker run --rm -e MEMOIRE_DATABASE_URL=... -e MEMOIRE_REDIS_URL=... memoire worker
#   docker run --rm -e MEMOIRE_DATABASE_URL=... memoire migrate
#
# docker-compose.yml runs the whole stack from this image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Dependencies first, read from pyproject.toml, so this layer is rebuilt only when pyproject.toml changes.
# Runtime dependencies only: the optional test extras are never installed.
COPY pyproject.toml README.md* ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write(chr(10).join(deps) + chr(10))" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself: setuptools needs every package directory present to build it.
COPY memoire ./memoire
COPY proxy ./proxy
COPY memory ./memory
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-deps . \
    && pip check

# An unprivileged user, and the state directory it owns (the exchange spool lives there; mount a volume).
RUN groupadd --system --gid 10001 memoire \
    && useradd --system --uid 10001 --gid memoire --home-dir /home/memoire --create-home \
       --shell /usr/sbin/nologin memoire \
    && mkdir -p /data \
    && chown memoire:memoire /data

# Listen on every interface inside the container (the default, 127.0.0.1, is unreachable from outside it).
ENV MEMOIRE_SERVER_HOST=0.0.0.0 \
    MEMOIRE_SERVER_DATA_DIR=/data

WORKDIR /data
USER 10001:10001
EXPOSE 8080

# Liveness of the API. Slim images have no curl; urlopen raises (non-zero exit) on anything but 2xx.
# Services that run `worker` or `migrate` from this image override or disable it (see docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MEMOIRE_SERVER_PORT', '8080') + '/healthz', timeout=4)"]

ENTRYPOINT ["memoire"]
CMD ["serve"]
