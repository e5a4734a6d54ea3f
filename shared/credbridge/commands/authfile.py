"""Docker-format authfiles built from a credential helper, for programs that cannot call one.

`authfile` writes such a file; `exec` keeps it in an anonymous memory file that ends with exec,
SIGKILL included (docs/design.md, "authfile and exec").
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from typing import Mapping, Optional, Sequence

from credbridge import urls, wire
from credbridge.commands import configdir, supervise
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.files import atomicfile, dockerconfig, execdirs, remotetokens
from credbridge.helperclient import HelperProgram
from credbridge.store import Credentials
from credbridge.stores.router import routing

#: Every variable a reader of authfiles looks at: Apptainer reads AUTH_FILE although its docs say AUTHFILE.
AUTHFILE_VARIABLES = ("APPTAINER_AUTH_FILE", "APPTAINER_AUTHFILE", "SINGULARITY_AUTHFILE", "REGISTRY_AUTH_FILE")


def write_authfile(
    registries: Sequence[str], output: Optional[str], store: Optional[str], environ: Mapping[str, str]
) -> None:
    """`credbridge authfile`: to FILE (0600, atomic), or to stdout unless that is a terminal."""
    if output is None and sys.stdout.isatty():
        raise HelperError("refusing to print credentials on a terminal: write them with -o FILE, or pipe the output")
    data = build(configured_store(store, environ), registries, environ)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    _refuse_missing_parent(output)
    with atomicfile.writing(output), atomicfile.exclusive(output):
        atomicfile.replace(output, data)


def _refuse_missing_parent(output: str) -> None:
    """-o names a file: creating directories the user did not ask for would put a secret where no one looks."""
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise HelperError(
            f"cannot write {output}: {parent} does not exist: "
            f"create it with `mkdir -m 700 -p {shlex.quote(parent)}`, or name another -o FILE"
        )


def run_with_authfile(
    command: Sequence[str], registries: Sequence[str], store: Optional[str], environ: Mapping[str, str]
) -> int:
    """`credbridge exec`: COMMAND's exit status; its authfile lives in our memory and dies with us."""
    data = build(configured_store(store, environ), registries, environ)
    base = wire.agent_dir(environ)
    if base is None:
        raise HelperError(
            "no private directory for the authfile: set XDG_RUNTIME_DIR to a directory of yours, "
            "or make ~/.local/state writable"
        )
    with atomicfile.writing(base):
        atomicfile.private_dir(base)
    helper = HelperProgram(configured_store(store, environ), environ)
    supervise.block_signals()
    directory = os.path.join(base, execdirs.new_name())
    try:
        with atomicfile.writing(directory):
            os.mkdir(directory, 0o700)
            remove_when_gone(directory)
            authfile = _anonymous_file(data, directory)
            os.symlink(authfile, os.path.join(directory, "config.json"))
            mirrors = configdir.prepare(
                directory, helper, authfile, lambda text: _anonymous_file(text, directory), environ
            )
        status = supervise.run(
            command,
            {
                **environ,
                **dict.fromkeys(AUTHFILE_VARIABLES, authfile),
                "DOCKER_CONFIG": directory,
                **configdir.variables(mirrors),
            },
        )
        configdir.bring_home(mirrors, helper)
        return status
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def remove_when_gone(directory: str) -> None:
    """A watcher that removes `directory` once we are gone, SIGKILL included (SingularityCE's remote.yaml,
    which it will not read through a link to our memory, is a file there). It waits for the end of a pipe
    only we hold (not inherited by the command), in a session of its own, with our signals blocked."""
    reading, writing = os.pipe()
    if os.fork() == 0:
        try:
            os.close(writing)
            os.setsid()
            nowhere = os.open(os.devnull, os.O_RDWR)
            for standard in (0, 1, 2):  # whoever reads our output sees its end when we end
                os.dup2(nowhere, standard)
            os.read(reading, 1)
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            os._exit(0)
    os.close(reading)


def _anonymous_file(data: bytes, directory: str) -> str:
    """A path to `data` that only this process keeps alive: /proc/OUR_PID/fd/N, readable by our uid alone.

    A memory file (memfd) is on no filesystem at all. Where the kernel or libc has none (RHEL 7),
    a file in our private directory, unlinked before a byte is written to it. The descriptor is
    not inherited: nothing but this process holds the secret.
    """
    try:
        descriptor = os.memfd_create("credbridge-authfile", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        descriptor, name = tempfile.mkstemp(dir=directory)
        os.unlink(name)
    os.fchmod(descriptor, 0o600)  # what a reader that checks the mode of an authfile expects
    with open(descriptor, "wb", closefd=False) as memory:
        memory.write(data)
    return f"/proc/{os.getpid()}/fd/{descriptor}"


def configured_store(store: Optional[str], environ: Mapping[str, str]) -> str:
    """--store, else the credsStore docker itself would use, else the router: one login serves every tool."""
    return store or dockerconfig.creds_store(environ) or routing.ROUTER


def build(store: str, registries: Sequence[str], environ: Mapping[str, str]) -> bytes:
    """The authfile for these registries (every one the helper lists when none is named)."""
    helper = HelperProgram(store, environ)
    listed = helper.list()
    found: dict[str, Credentials] = {}
    for registry in registries:
        credentials = _login_for(registry, helper, listed)
        found[credentials.server_url] = credentials
    if not registries:
        for key in [key for key in listed if not remotetokens.is_remote_key(key)]:  # a token is no registry's
            # A listed key get cannot find (Go secretservice >= 0.9 lists labels) is skipped, as docker does.
            with contextlib.suppress(CredentialsNotFound):
                found[key] = helper.get(key)
    return render(list(found.values()))


def _login_for(registry: str, helper: HelperProgram, listed: Mapping[str, str]) -> Credentials:
    """The login under the listed key that best matches `registry`; none is the user's to fix."""
    key = urls.best_match(registry, listed)
    if key is not None:
        with contextlib.suppress(CredentialsNotFound):
            return helper.get(key)
    raise HelperError(f"{helper.program} has no credentials for {registry}: log in to it first")


def render(found: Sequence[Credentials]) -> bytes:
    """Byte for byte what docker CLI writes to config.json (Go sorts the auths keys)."""
    ordered = sorted(found, key=lambda credentials: credentials.server_url)
    return dockerconfig.dumps(
        {"auths": {credentials.server_url: dockerconfig.credentials_entry(credentials) for credentials in ordered}}
    )
