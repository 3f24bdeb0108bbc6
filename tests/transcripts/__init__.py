"""IMAP transcript scripts (``*.imap``), their runner, and the Dovecot oracle that checks them."""
