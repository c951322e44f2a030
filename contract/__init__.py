"""The wire contract: the v1 event schemas producers speak, their CloudEvents envelope and its Kafka binding."""
