"""Columba's benchmark suite: the same workloads against Columba and Debian's Dovecot, as ratios.

``python -m bench`` (``make bench``) runs everything; ``python -m bench --quick`` is a < 2 min
smoke run; ``--only imap,lmtp,big,idle`` picks workloads. See ``bench/README.md``.
"""
