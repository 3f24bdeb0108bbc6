"""Columba's IMAP server: the session state machine and the IMAP commands on the storage API.

- :mod:`.service` -- the ``imap-login`` / ``imap`` connection handlers (start here);
- :mod:`.session` -- :class:`~.session.ImapSession`: states, the seq<->uid map of the selected
  mailbox, queued untagged responses, literal flow control with the codec, output batching;
- :mod:`.dispatch` -- which command runs in which state, and where its handler lives;
- :mod:`.capability` -- the capability lists before and after login;
- ``cmd_*`` -- one module per command family.

The wire format is :mod:`columba.proto.imap`'s business; this package only decides what to say.
"""
