#!/usr/bin/env bash
# Run once by the postgres image when it initialises the primary of the `scale` profile
# (docker-compose.yml): lets the replica stream from it.
set -euo pipefail
echo "host replication all all trust" >>"$PGDATA/pg_hba.conf"
