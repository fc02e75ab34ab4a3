"""Process-level runtime: the embedded Valkey server and cluster the service runs on."""
