"""The errors a helper answers with: one line each, printed on stdout, exit 1.

Stores raise these with a message a person can act on; the protocol prints
the message as is. Anything else that escapes a store is turned into a
generic, secret-free line by the protocol's guard.
"""


class HelperError(Exception):
    """A failure whose message is safe to show and says what to do."""


class CredentialsNotFound(HelperError):
    """No credential for the server: clients match this exact text."""

    def __init__(self) -> None:
        super().__init__("credentials not found in native keychain")


class MissingServerURL(HelperError):
    def __init__(self) -> None:
        super().__init__("no credentials server URL")


class MissingUsername(HelperError):
    def __init__(self) -> None:
        super().__init__("no credentials username")


class Refused(HelperError):
    """The store would not hand the login over (locked, a prompt dismissed, a policy).

    The audit log records these as `denied`.
    """


class StoreLocked(Refused):
    """The store holds a login for the server but cannot open it without a key or a person.

    The router reports this only when no other store answers; a store that
    does not hold the server raises CredentialsNotFound even while locked.
    """


class StoreUnavailable(HelperError):
    """The store's service cannot be reached now (no Secret Service, a Vault that does not answer).

    It cannot know of a login, so the router reads it as "not found" and
    tools go on anonymously; a write to it still fails with this message.
    """
