"""The log: storage, the append with its receipts, the hash chain and the quarantine of rejected events."""
