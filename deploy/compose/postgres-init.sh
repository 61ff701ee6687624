#!/bin/sh
# Runs once, when the PostgreSQL volume is empty (/docker-entrypoint-initdb.d): one role and one
# database per service, as in production, where no service can read another's tables.
# DEVELOPMENT ONLY: each password equals the role name.
set -eu
for service in registry membership invitation notification audit; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE $service LOGIN PASSWORD '$service';
CREATE DATABASE $service OWNER $service;
REVOKE ALL ON DATABASE $service FROM PUBLIC;
SQL
done
# audit's migration grants its NOLOGIN role SELECT/INSERT on the log table and every transaction
# of the service runs `SET LOCAL ROLE tenantry_audit_writer`: the role exists beforehand (the
# `audit` login may not create roles) and `audit` is a member of it.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE tenantry_audit_writer NOLOGIN;
GRANT tenantry_audit_writer TO audit;
SQL
