# One image for every fleet role (scheduler, worker, simulator, migrations); docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY warmup ./warmup
COPY workers ./workers
RUN pip install .
COPY plans ./plans
RUN useradd --create-home warmup
USER warmup
CMD ["warmup", "--help"]
