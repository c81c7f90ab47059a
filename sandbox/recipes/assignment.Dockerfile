# The assignment image: the assignment's packages in /opt/venv, a non-root user, the stage folders.
# Built offline (network "none"): wheels/ holds exactly the wheels the host resolved for this image.
ARG BASE
FROM ${BASE}
USER root
COPY wheels/ /tmp/wheels/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    if [ -s /tmp/wheels/requirements.txt ]; then \
        /opt/venv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check --progress-bar off \
            --find-links /tmp/wheels -c /tmp/wheels/constraints.txt -r /tmp/wheels/requirements.txt; \
    fi; \
    rm -rf /tmp/wheels; \
    groupadd --gid 10001 sandbox; \
    useradd --uid 10001 --gid 10001 --no-log-init --home-dir /home/sandbox --shell /bin/sh sandbox; \
    mkdir -p /home/sandbox /workspace /output /data /submission; \
    chown 10001:10001 /home/sandbox /workspace /output /data /submission
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/sandbox
USER 10001:10001
WORKDIR /submission
