"""LMTP (RFC 2033) delivery service: ``columba.lmtp.service`` registers the ``lmtp`` handler."""
