"""The wire contract: the v1 event schemas producers speak and their CloudEvents envelope."""
