#!/bin/sh
# Kafka from the local stack's jars and JDK (mounted read-only), configured from the
# KAFKA_* variables deploy/compose.yaml gives the apache/kafka image, as that image's
# own start script does: KAFKA_FOO_BAR=x becomes foo.bar=x.
set -eu
conf=/tmp/server.properties
env | grep '^KAFKA_' | grep -v -e '^KAFKA_HEAP_OPTS=' | while IFS='=' read -r name value; do
	key=$(echo "${name#KAFKA_}" | tr 'A-Z' 'a-z' | tr '_' '.')
	echo "$key=$value"
done > "$conf"
classpath='/opt/kafka/libs/*'
if [ ! -f "$KAFKA_LOG_DIRS/meta.properties" ]; then
	java -cp "$classpath" kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" --config "$conf"
fi
# shellcheck disable=SC2086
exec java $KAFKA_HEAP_OPTS -cp "$classpath" kafka.Kafka "$conf"
