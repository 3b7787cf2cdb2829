#!/usr/bin/env bash
# The churn-signals topic plan: every topic the worker reads or writes (Faust's changelog and
# leader topics included), each with its partitions, replication and configs. Idempotent
# (--if-not-exists). Written by `churn-signals topics --format sh`; change the settings and
# write it again rather than editing it (docs/operations.md, "Topics").
#
# Input topics, the clock and the table changelog share one partition count: the customer
# table is co-partitioned with them. Override with the variables below, e.g.
#   BOOTSTRAP=kafka-1:9092 REPLICATION=3 MIN_INSYNC=2 COMMAND_CONFIG=client.properties ./create-topics.sh
set -euo pipefail
BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
PARTITIONS=${PARTITIONS:-6}
REPLICATION=${REPLICATION:-1}
MIN_INSYNC=${MIN_INSYNC:-}           # empty: the cluster's min.insync.replicas
COMMAND_CONFIG=${COMMAND_CONFIG:-}   # client properties for a secured cluster (SASL, TLS)
KAFKA_TOPICS=${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}

create() {  # name partitions config...
  local name=$1 parts=$2; shift 2
  local args=()
  for c in "$@"; do args+=(--config "$c"); done
  if [ -n "$MIN_INSYNC" ]; then args+=(--config "min.insync.replicas=$MIN_INSYNC"); fi
  if [ -n "$COMMAND_CONFIG" ]; then args+=(--command-config "$COMMAND_CONFIG"); fi
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$parts" --replication-factor "$REPLICATION" "${args[@]}"
}

create orders "$PARTITIONS" retention.ms=604800000   # input events; 7 days to replay from for a rebuild
create deliveries "$PARTITIONS" retention.ms=604800000   # input events; 7 days to replay from for a rebuild
create courier-ratings "$PARTITIONS" retention.ms=604800000   # input events; 7 days to replay from for a rebuild
create customer-consent "$PARTITIONS" retention.ms=604800000   # input events; 7 days to replay from for a rebuild
create churn-clock "$PARTITIONS" retention.ms=3600000   # clock ticks of the live worker; needed only until consumed
create churn-triggers "$PARTITIONS" retention.ms=2592000000   # actionable triggers for the CRM
create churn-trigger-audit "$PARTITIONS" retention.ms=7776000000   # suppressed decisions with their reasons
create churn-dlq "$PARTITIONS" retention.ms=2592000000   # dead letters: bad input with raw bytes and the reason
create churn-signals-customers-changelog "$PARTITIONS" cleanup.policy=compact min.compaction.lag.ms=60000   # Faust table changelog: each customer's latest state
create churn-signals-__assignor-__leader 1   # Faust assignor's leader election; never written

"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --list ${COMMAND_CONFIG:+--command-config "$COMMAND_CONFIG"}
