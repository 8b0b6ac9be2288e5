#!/usr/bin/env bash
# Example Kafka ACLs for one Postee Streams deployment (see docs/trust.md).
#
#   PREFIX=postee BOOTSTRAP=kafka:9092 ADMIN_CONFIG=admin.properties deploy/kafka/acls.sh
#
# Needs an authorizer on the brokers and authenticated principals. Principals:
#   User:postee-worker    every `postee run` process (bridge, router, action agents)
#   User:alert-producer   scanners that produce events straight to Kafka
#   User:postee-operator  `postee replay`, `timeline`, `tail`
#   User:soc-reader       read-only consumers of the forensic record
set -euo pipefail
PREFIX="${PREFIX:-postee}"
BOOTSTRAP="${BOOTSTRAP:-localhost:9092}"
ADMIN_CONFIG="${ADMIN_CONFIG:-}"
ACLS=(kafka-acls.sh --bootstrap-server "$BOOTSTRAP")
[[ -n "$ADMIN_CONFIG" ]] && ACLS+=(--command-config "$ADMIN_CONFIG")

allow() { # principal, then the rest of a kafka-acls.sh --add call
  local principal=$1
  shift
  "${ACLS[@]}" --add --allow-principal "$principal" "$@"
}

# The worker owns every topic of its prefix, its changelogs and its consumer group.
for resource in "$PREFIX." "$PREFIX-streams-"; do
  allow User:postee-worker --resource-pattern-type prefixed --topic "$resource" \
    --operation Read --operation Write --operation Create --operation Describe \
    --operation DescribeConfigs
done
allow User:postee-worker --resource-pattern-type prefixed --group "$PREFIX-streams"
allow User:postee-worker --operation IdempotentWrite --cluster

# Scanners may submit events, nothing else.
allow User:alert-producer --topic "$PREFIX.events" --operation Write --operation Describe
allow User:alert-producer --operation IdempotentWrite --cluster

# Operators read everything of the prefix and may replay.
allow User:postee-operator --resource-pattern-type prefixed --topic "$PREFIX." \
  --operation Read --operation Describe
allow User:postee-operator --topic "$PREFIX.replay" --operation Write

# Readers of the forensic record.
for topic in events outcomes dlq; do
  allow User:soc-reader --topic "$PREFIX.$topic" --operation Read --operation Describe
done
allow User:soc-reader --resource-pattern-type prefixed --group "$PREFIX-soc-" --operation Read
