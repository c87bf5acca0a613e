# The web service (upload page, REST API, keys, business metrics) in front of the Triton service.
# CPU only, no Triton inside: it talks to the `triton` service over gRPC. Data (SQLite database,
# uploads) lives in the volume at /var/lib/fakescope; set FAKESCOPE_WEB_DATABASE_URL to use
# PostgreSQL instead.
FROM python:3.11-slim
WORKDIR /opt/fakescope
COPY pyproject.toml README.md constraints.txt ./
COPY fakescope ./fakescope
COPY client ./client
COPY export ./export
COPY training ./training
COPY benchmarks ./benchmarks
COPY web ./web
RUN pip install --no-cache-dir -c constraints.txt ".[web]" \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/fakescope --create-home fakescope
# A fixed numeric user: Kubernetes can check runAsNonRoot against it, and the Helm chart's fsGroup
# (deploy/helm/fakescope, web.podSecurityContext) makes mounted upload volumes writable by it.
USER 10001:10001
WORKDIR /var/lib/fakescope
ENV FAKESCOPE_WEB_DATABASE_URL=sqlite:////var/lib/fakescope/web.db \
    FAKESCOPE_WEB_DATA_DIR=/var/lib/fakescope/web
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/v1/health', timeout=4)"]
CMD ["fakescope", "web", "serve", "--host", "0.0.0.0", "--port", "8080"]
