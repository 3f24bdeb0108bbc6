"""doveadm-style admin commands (``columba pw``, ``columba auth test``, ...)."""
