"""Columba's benchmark suite: the same workloads against Columba and Debian's Dovecot, as ratios.

``python -m bench`` (``make bench``) runs everything; ``python -m bench --quick`` is a < 2 min
smoke run; ``--only imap,lmtp,big,idle,fetch`` picks workloads; ``--peers`` picks servers
(``columba``, ``dovecot``, ``columba-s3pg``: Columba on S3 + PostgreSQL). See ``bench/README.md``.
"""
