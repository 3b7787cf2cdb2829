#!/usr/bin/env bash
# Install the Debian tools the test suite needs, once. Safe to re-run.
set -euo pipefail
need=()
# (Debian packages are added here as the tests come to need them.)
# promtool + the Prometheus server: rule/config checks and the real-Prometheus test.
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
# docker-compose (v1, Python): validates docker-compose.yml without a Docker engine.
command -v docker-compose >/dev/null || need+=(docker-compose)
# Java 17+ and Maven: the Apache Kafka broker the tests also run on (tests/kafka: jars from Maven Central).
java_ok() { command -v java >/dev/null && java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); exit !(v[1] >= 17)}'; }
java_ok || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
