# Postee Streams: the `postee` worker (router + actions + HTTP ingest bridge on :8082).
#
#   docker build -t postee-streams .
#   docker run --rm --read-only -e POSTEE_KAFKA=broker:9092 \
#     -v "$PWD/cfg.yaml:/config/cfg.yaml:ro" -p 8082:8082 postee-streams
#
# Non-root (uid 10001) with a read-only root filesystem in mind: the only writable places
# are /data (POSTEE_DATA_DIR, Faust's local state) and /tmp (TMPDIR, exec event files),
# declared as volumes (emptyDirs in deploy/helm/postee-streams). Probes: GET /livez and
# /readyz; metrics: GET /metrics.
#
# Or everything, Kafka included: `docker-compose up --build` (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, read from pyproject.toml itself (no second list
# to keep in sync): a code change then does not reinstall them.
COPY pyproject.toml ./
# The `otel` extra too: traces stay off until POSTEE_OTEL or OTEL_* turn them on.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['otel']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Why an editable install: streams/config.py (SCHEMA_PATH) and streams/records.py
# (SCHEMAS_DIR) read the JSON schemas at `Path(__file__).parent.parent / "schemas"`, and
# schemas/ is not package data. A regular `pip install .` would put the packages in
# site-packages, where ../schemas does not exist. `pip install -e .` keeps the code
# imported from /app/streams and /app/actions, so /app/schemas is found; the `postee`
# console script is installed all the same. `--no-deps`: they are installed above.
COPY schemas/ schemas/
COPY rego-templates/ rego-templates/
COPY actions/ actions/
COPY streams/ streams/
RUN pip install --no-deps -e . \
    && python -c "import streams.config as c, streams.records as r; assert c.SCHEMA_PATH.is_file(), c.SCHEMA_PATH; assert (r.SCHEMAS_DIR / 'routed.schema.json').is_file()" \
    && postee --help >/dev/null

# Non-root. /app stays root-owned (read-only code); the worker's working directory is
# /data, writable by it. Nothing else is written at run time (PYTHONDONTWRITEBYTECODE):
# Faust's data directory is POSTEE_DATA_DIR under /data, temporary files go to TMPDIR.
# Relative paths (REGO_FILTERS_PATH) resolve under /data; the shipped templates are read
# from /app/rego-templates.
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home \
        --shell /usr/sbin/nologin postee \
    && install -d -o postee -g postee -m 0700 /data/state
USER 10001:10001
WORKDIR /data
VOLUME ["/data", "/tmp"]

# Mount your cfg.yaml here, or set POSTEE_CFG.
ENV POSTEE_CFG=/config/cfg.yaml \
    POSTEE_HTTP=0.0.0.0:8082 \
    POSTEE_TEMPLATES_PATH=/app/rego-templates \
    POSTEE_DATA_DIR=/data/state \
    TMPDIR=/tmp \
    HOME=/data

EXPOSE 8082

ENTRYPOINT ["postee"]
CMD ["run"]
