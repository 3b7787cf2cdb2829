# The churn-signals worker image (docker-compose.yml builds it as churn-signals:local).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY detectors ./detectors
COPY schemas ./schemas
COPY streams ./streams
RUN pip install . && useradd --uid 10001 --no-create-home churn
USER churn
EXPOSE 6066
ENTRYPOINT ["churn-signals"]
CMD ["worker"]
