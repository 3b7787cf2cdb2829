"""Apache Kafka for the tests (launcher.py): fetched with Maven, started on loopback."""
