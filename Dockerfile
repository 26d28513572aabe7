# One image for every process of the stack (web, worker, beat): see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The pinned runtime dependencies first, so a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install -r requirements.lock

RUN useradd --create-home --uid 10001 --user-group app
COPY --chown=app:app . .
# collectstatic and the default SQLite path write here at run time.
RUN mkdir -p /app/staticfiles /app/var && chown app:app /app/staticfiles /app/var

USER app
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "realtime.asgi:application"]
