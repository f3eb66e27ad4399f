#!/usr/bin/env bash
# Every container of the Airflow image starts here (Dockerfile: ENTRYPOINT): the secrets check first, then the
# image's own entrypoint with the command. In production (SURVEY_ENV=production, in any case, which
# docker-compose.yml always sets) the container stops before anything else runs when a secret it is given is missing,
# a placeholder, a development default, too short, guessable, reused, or (the Fernet key) not a key; the message names
# each variable and how to make one (survey_warehouse.secrets). SURVEY_SERVICE names the set to check:
# `airflow` (every long-running Airflow service) or `airflow-init` (also the database roles' and the admin's
# passwords).
set -euo pipefail
python -m survey_warehouse.secrets check "${SURVEY_SERVICE:-airflow}"
exec /entrypoint "$@"
