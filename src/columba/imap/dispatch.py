"""The command table: which handler runs each parsed command, in which states, and whether
the selected mailbox is synced (and expunges announced) after it. Importing this module
installs the table into :mod:`columba.imap.session`."""

from __future__ import annotations

from columba.imap import (
    cmd_append,
    cmd_auth,
    cmd_copy,
    cmd_expunge,
    cmd_fetch,
    cmd_mailbox,
    cmd_metadata,
    cmd_misc,
    cmd_notify,
    cmd_search,
    cmd_sort,
    cmd_store,
    cmd_thread,
    cmd_urlauth,
    compress,
    search_context,
)
from columba.imap.session import CommandSpec, State, install_commands
from columba.proto.imap import commands as c

__all__ = ["COMMANDS", "command_spec"]

ANY = frozenset(State) - {State.LOGOUT}
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})

COMMANDS: dict[type[c.Command], CommandSpec] = {
    # any state
    c.CapabilityCommand: CommandSpec(cmd_misc.capability, ANY),
    c.NoopCommand: CommandSpec(cmd_misc.noop, ANY),
    c.LogoutCommand: CommandSpec(cmd_misc.logout, ANY, sync_after=False),
    c.IdCommand: CommandSpec(cmd_misc.id_command, ANY),
    c.EnableCommand: CommandSpec(cmd_misc.enable, AUTH),
    # not authenticated
    c.StartTlsCommand: CommandSpec(cmd_auth.starttls, NOT_AUTH),
    c.LoginCommand: CommandSpec(cmd_auth.login, NOT_AUTH),
    c.AuthenticateCommand: CommandSpec(cmd_auth.authenticate, NOT_AUTH),
    # authenticated
    c.SelectCommand: CommandSpec(cmd_mailbox.select, AUTH),
    c.CreateCommand: CommandSpec(cmd_mailbox.create, AUTH),
    c.DeleteCommand: CommandSpec(cmd_mailbox.delete, AUTH),
    c.RenameCommand: CommandSpec(cmd_mailbox.rename, AUTH),
    c.SubscribeCommand: CommandSpec(cmd_mailbox.subscribe, AUTH),
    c.UnsubscribeCommand: CommandSpec(cmd_mailbox.unsubscribe, AUTH),
    c.ListCommand: CommandSpec(cmd_mailbox.list_command, AUTH),
    c.LsubCommand: CommandSpec(cmd_mailbox.lsub, AUTH),
    c.NamespaceCommand: CommandSpec(cmd_misc.namespace, AUTH),
    c.StatusCommand: CommandSpec(cmd_mailbox.status, AUTH),
    c.AppendCommand: CommandSpec(cmd_append.append, AUTH),
    c.IdleCommand: CommandSpec(cmd_notify.idle, AUTH),  # plain IDLE unless NOTIFY is set
    c.NotifyCommand: CommandSpec(cmd_notify.notify, AUTH),
    c.CompressCommand: CommandSpec(compress.compress, AUTH, sync_after=False),
    c.GetMetadataCommand: CommandSpec(cmd_metadata.getmetadata, AUTH),
    c.SetMetadataCommand: CommandSpec(cmd_metadata.setmetadata, AUTH),
    c.ResetKeyCommand: CommandSpec(cmd_urlauth.resetkey, AUTH),
    c.GenUrlAuthCommand: CommandSpec(cmd_urlauth.genurlauth, AUTH),
    c.UrlFetchCommand: CommandSpec(cmd_urlauth.urlfetch, AUTH),
    # selected
    c.CheckCommand: CommandSpec(cmd_misc.check, SELECTED),
    c.CloseCommand: CommandSpec(cmd_mailbox.close, SELECTED, sync_after=False),
    c.UnselectCommand: CommandSpec(cmd_mailbox.unselect, SELECTED, sync_after=False),
    c.ExpungeCommand: CommandSpec(cmd_expunge.expunge, SELECTED),
    c.SearchCommand: CommandSpec(cmd_search.search, SELECTED, no_expunges_by_seq=True),
    c.FetchCommand: CommandSpec(cmd_fetch.fetch, SELECTED, no_expunges_by_seq=True),
    c.StoreCommand: CommandSpec(cmd_store.store, SELECTED, no_expunges_by_seq=True),
    c.CopyCommand: CommandSpec(cmd_copy.copy, SELECTED, no_expunges_by_seq=True),
    c.MoveCommand: CommandSpec(cmd_copy.move, SELECTED),
    c.SortCommand: CommandSpec(cmd_sort.sort, SELECTED, no_expunges_by_seq=True),
    c.ThreadCommand: CommandSpec(cmd_thread.thread, SELECTED, no_expunges_by_seq=True),
    c.CancelUpdateCommand: CommandSpec(search_context.cancelupdate, SELECTED),
}
"""Commands the codec parses but this table leaves out (GETQUOTA, ...) are
answered ``BAD Unknown command``; so are GETMETADATA/SETMETADATA unless ``imap_metadata``."""


def command_spec(cmd: c.Command) -> CommandSpec | None:
    """How to run ``cmd``; None for a command this server doesn't implement."""
    return COMMANDS.get(type(cmd))


install_commands(command_spec)
search_context.install()
