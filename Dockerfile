# Video Gateway: one image for the API, the worker, migrations and the simulator (pick with the command).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app gateway
COPY --from=build /opt/venv /opt/venv
COPY --chown=gateway alembic.ini /app/alembic.ini
COPY --chown=gateway migrations /app/migrations
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 VG_API__HOST=0.0.0.0
USER gateway
EXPOSE 8000
ENTRYPOINT ["video-gateway"]
CMD ["serve"]
