# A candidate's image: the assignment image plus the submission's pinned requirements.
# Built offline (network "none"): wheels/ holds exactly the wheels the host resolved for them.
ARG PARENT
FROM ${PARENT}
USER root
COPY wheels/ /tmp/wheels/
RUN set -eu; \
    /opt/venv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check --progress-bar off \
        --find-links /tmp/wheels -c /tmp/wheels/constraints.txt -r /tmp/wheels/requirements.txt; \
    rm -rf /tmp/wheels
USER 10001:10001
WORKDIR /submission
