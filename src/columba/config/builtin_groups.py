"""Built-in setting groups (``@metric_defaults = backend``, ``@fs_defaults = s3``, ...).

Written in the configuration language itself and parsed by the same parser. Contents follow
Dovecot CE's built-in groups and the Dovecot Pro quick-start guide; where Pro's content is not
public (``@fs_dictmap_defaults``, ``@fts_fs_defaults``, ``@cluster_defaults``) the groups hold
what Columba's drivers need, and ``columba config -d @label/name`` shows them.
"""

from __future__ import annotations

_AUTH_METRICS = """\
  metric auth_successes {
    filter = event=auth_request_finished AND success=yes
  }
  metric auth_failures {
    filter = event=auth_request_finished AND NOT success=yes
  }
"""


def _fs_defaults(terminal: str) -> str:
    return f"""\
group @fs_defaults {terminal} {{
  fs_compress_write_method = zstd
  obox {{
    fs fscache {{
      path = /var/cache/mails/%{{user | sha1 % 4}}
      size = 512M
    }}
    fs compress {{
    }}
    fs crypt {{
    }}
    fs dictmap {{
      storage_objectid_prefix = %{{user}}/mails/
    }}
    fs {terminal} {{
    }}
  }}
  metacache {{
    fs compress {{
    }}
    fs crypt {{
    }}
    fs dictmap {{
      storage_passthrough_paths = full
    }}
    fs {terminal} {{
    }}
  }}
}}
"""


def _fts_fs_defaults(terminal: str) -> str:
    return f"""\
group @fts_fs_defaults {terminal} {{
  fts_dovecot {{
    fs compress {{
    }}
    fs crypt {{
    }}
    fs dictmap {{
      storage_passthrough_paths = full
    }}
    fs {terminal} {{
    }}
  }}
}}
"""


def _dictmap_defaults(driver: str, settings: str) -> str:
    return f"""\
group @fs_dictmap_defaults {driver} {{
  fs_dictmap_refcounting_table = yes
  fs_dictmap_bucket_size = 10000
  fs_dictmap_bucket_deleted_days = 11
  fs_dictmap_nlinks_limit = 3
  fs_dictmap_delete_timestamp = 10 secs
  dict {driver} {{
{settings}  }}
}}
"""


_MAILBOXES = "".join(
    f"""\
    mailbox {name} {{
      auto = subscribe
      special_use = \\{name}
    }}
"""
    for name in ("Drafts", "Junk", "Sent", "Trash")
)

BUILTIN_GROUPS_TEXT = (
    f"""\
group @metric_defaults proxy {{
{_AUTH_METRICS}  metric login_aborted {{
    filter = event=login_aborted
    group_by reason {{
    }}
  }}
  metric proxy_session_established {{
    filter = event=proxy_session_established
  }}
}}
group @metric_defaults backend {{
{_AUTH_METRICS}  metric imap_commands {{
    filter = event=imap_command_finished
    group_by tagged_reply_state {{
    }}
  }}
  metric mail_deliveries {{
    filter = event=mail_delivery_finished
  }}
  metric mail_submissions {{
    filter = event=smtp_submit_finished
  }}
  metric mail_user_session_finished {{
    filter = event=mail_user_session_finished
    fields = rss utime
  }}
  metric metacache_user_clean_finished {{
    filter = event=metacache_user_clean_finished
  }}
}}
group @mailbox_defaults english {{
  namespace inbox {{
    inbox = yes
{_MAILBOXES}  }}
}}
"""
    + _fs_defaults("s3")
    + _fs_defaults("aws-s3")
    + _fs_defaults("posix")
    + _fts_fs_defaults("s3")
    + _fts_fs_defaults("aws-s3")
    + _fts_fs_defaults("posix")
    + _dictmap_defaults("cassandra", "")
    + _dictmap_defaults("postgresql", "")
    + _dictmap_defaults("sqlite", "    sqlite_path = /var/lib/columba/dict.db\n")
    + """\
group @cluster_defaults proxy {
  columba_roles = proxy
  lmtp_proxy = yes
  cluster_proxy_check_backends = yes
}
group @cluster_defaults backend {
  columba_roles = backend
}
group @cluster_defaults controller {
  columba_roles = controller
}
"""
)
