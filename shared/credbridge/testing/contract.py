"""The contract as a pytest class, as python-keyring ships `keyring.testing.backend`.

    class TestMyHelper(HelperContract):
        def helper_command(self) -> HelperCommand:
            return HelperCommand(["/usr/local/bin/docker-credential-mine"], {"HOME": "/tmp/home"})

Every check of `checks` becomes a `test_<check>` method; pytest is needed only to collect them.
Give each test a store of its own, or one you do not mind throwaway logins passing through.
"""

from __future__ import annotations

from credbridge.testing.calls import HelperCommand
from credbridge.testing.checks import READ_ONLY, WRITING, Check, Conversation, run_check


class HelperContract:
    """Subclass it as Test<Something> and say how to run the helper in `helper_command`."""

    def helper_command(self) -> HelperCommand:
        raise NotImplementedError("return HelperCommand([path to docker-credential-NAME], environment)")


def _as_test(check: Check) -> "object":
    def test(self: HelperContract) -> None:
        run_check(Conversation(self.helper_command()), check)

    test.__name__ = test.__qualname__ = f"test_{check.__name__}"
    test.__doc__ = check.__doc__
    return test


for _check in (*READ_ONLY, *WRITING):
    setattr(HelperContract, f"test_{_check.__name__}", _as_test(_check))
