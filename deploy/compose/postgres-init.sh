#!/bin/sh
# Runs once, when the PostgreSQL volume is empty (/docker-entrypoint-initdb.d): one role and one
# database per service, as in production, where no service can read another's tables.
# DEVELOPMENT ONLY: each password equals the role name.
set -eu
for service in registry membership invitation notification; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE $service LOGIN PASSWORD '$service';
CREATE DATABASE $service OWNER $service;
REVOKE ALL ON DATABASE $service FROM PUBLIC;
SQL
done
