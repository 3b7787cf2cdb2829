#!/usr/bin/env bash
# Create churn-signals topics on the compose Kafka, each with its partitions,
# retention and cleanup policy. Idempotent (--if-not-exists); run by kafka-init.
#
# Input topics and the clock share one partition count: the customer table is
# co-partitioned with them. The table changelog is compacted (latest state per
# customer is all a restore needs); everything else is deleted by age.
set -euo pipefail
BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
PARTITIONS=${PARTITIONS:-6}
APP_ID=${APP_ID:-churn-signals}
REPLICATION=${REPLICATION:-1}
DAY=86400000

create() {  # name partitions config...
  local name=$1 parts=$2; shift 2
  local args=()
  for c in "$@"; do args+=(--config "$c"); done
  /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$parts" --replication-factor "$REPLICATION" "${args[@]}"
}

for t in orders deliveries courier-ratings customer-consent; do
  create "$t" "$PARTITIONS" "retention.ms=$((7 * DAY))"          # replay window for a rebuild
done
create churn-clock "$PARTITIONS" "retention.ms=3600000"           # ticks are only needed until consumed
create churn-triggers "$PARTITIONS" "retention.ms=$((30 * DAY))"
create churn-trigger-audit "$PARTITIONS" "retention.ms=$((90 * DAY))"
create churn-dlq "$PARTITIONS" "retention.ms=$((30 * DAY))"
# Faust names a table's changelog <app id>-<table>-changelog.
create "$APP_ID-customers-changelog" "$PARTITIONS" "cleanup.policy=compact" "min.compaction.lag.ms=60000"
/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --list
