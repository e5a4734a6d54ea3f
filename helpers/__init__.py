"""One tiny entry per docker-credential-* executable (installed as credbridge.helpers)."""
