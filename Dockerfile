# The prediction service: `mlops-nb serve` on the serving dependencies only (no torch, no notebooks), as a non-root
# user. The image carries the code; the workbook (settings.ini, its registry and artifact store) is mounted at
# /workbook, so one image serves every version the registry releases (the service follows its aliases):
#   podman build -t mlops-nb-serve .
#   podman run -p 8000:8000 -v "$PWD:/workbook" mlops-nb-serve            # then GET /v2/health/ready
# The prediction log is written where settings.ini [paths] predictions says: keep it on a writable volume.
ARG BASE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE}
# Offline builds (no index reachable): mount a folder of wheels and point pip at it, e.g.
#   podman build --network none --volume "$PWD/wheels:/wheels:ro" --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels .
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLOPS_NB_SETTINGS=/workbook/settings.ini

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mlops

WORKDIR /opt/mlops_nb
COPY pyproject.toml README.md ./
COPY mlops_nb/ mlops_nb/
# the package alone: its pinned serving dependencies, no training extra
RUN python -m pip install --no-compile /opt/mlops_nb && rm -rf /opt/mlops_nb/build /opt/mlops_nb/*.egg-info

USER 10001
WORKDIR /workbook
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["mlops-nb", "serve", "--host", "0.0.0.0", "--port", "8000"]
