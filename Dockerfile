# redroute: the HTTP API with its in-process timer worker.
#   docker build -t redroute . && docker run -p 8080:8080 -e REDIS_URL=redis://host:6379/0 redroute
# Without REDIS_URL it runs on the embedded backend (one process, state in memory).
#
# The two pip lines below are the ones .ci/wheel_check.py runs (the wheel CI
# installs in a fresh venv, serves and drives over HTTP): the image installs
# exactly what CI tested, pinned by requirements.lock, on the Python CI runs.
# tests/packaging/test_docker.py holds them to it.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY lua ./lua
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REDROUTE_HOST=0.0.0.0 \
    REDROUTE_PORT=8080 \
    REDROUTE_LOG_FORMAT=json
WORKDIR /src
COPY requirements.lock ./
COPY --from=build /dist /dist
RUN pip install --no-cache-dir --constraint requirements.lock /dist/redroute-*.whl
RUN rm -rf /dist /src \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin redroute
WORKDIR /
USER 10001
EXPOSE 8080
# /healthz is 200 only when Redis answers, the scripts are loaded and a timer
# worker is alive.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/healthz' % os.environ.get('REDROUTE_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
# SIGTERM: stop accepting, end SSE streams, finish in-flight requests.
STOPSIGNAL SIGTERM
ENTRYPOINT ["redroute"]
CMD ["serve"]
