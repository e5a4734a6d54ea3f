"""credbridge login / logout / list: the router's logins, as a person manages them.

Keys are spelled as docker login spells them (`https://index.docker.io/v1/`
for Docker Hub, bare `host[:port]` otherwise), so docker, podman and
Apptainer all find a login made here, and docker's own `logout` removes it.
"""

from __future__ import annotations

import json
from typing import Callable, Mapping, Optional

from credbridge import audit, urls
from credbridge.commands import registrycheck
from credbridge.commands.terminal import printable
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.files import dockerconfig, remotetokens
from credbridge.store import Credentials
from credbridge.stores.apptainer import APPTAINER, ApptainerFilesStore
from credbridge.stores.router import helperfiles
from credbridge.stores.router.store import Login, RouterStore, Survey

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
Say = Callable[[str], None]


def server_key(registry: Optional[str]) -> str:
    """docker login's key: Docker Hub's v1 URL, else the host[:port] without scheme or path."""
    if registry and remotetokens.is_remote_key(registry):
        return registry  # an endpoint token or keyserver login: its key is no registry's
    if not registry or urls.canonical(registry) == "docker.io":
        return DOCKER_HUB_KEY
    return urls.canonical(registry).partition("/")[0]


def login(env: Mapping[str, str], registry: Optional[str], username: str, secret: str, verify: bool, say: Say) -> None:
    router = RouterStore(env)
    key = server_key(registry)
    if verify:
        registrycheck.verify(key, username, secret)
    audit.by_command(
        env, "credbridge login", "store", key, router, lambda: router.store(Credentials(key, username, secret))
    )
    forget_agents_tokens(env)
    say(f"Login Succeeded ({key} as {username}, kept in {router.writer_for(key)})")


def logout(env: Mapping[str, str], registry: Optional[str], say: Say) -> None:
    """Absent is fine, as with docker logout: say so and succeed. Whether there is a login is a get, which
    reads the secret: the audit log says so, as it says a helper's."""
    router = RouterStore(env)
    key = server_key(registry)
    try:
        with helperfiles.kept_aside(env):
            audit.by_command(env, "credbridge logout", "get", key, router, lambda: router.get(key))
    except CredentialsNotFound:
        say(f"Not logged in to {key}")
        return
    audit.by_command(env, "credbridge logout", "erase", key, router, lambda: router.erase(key))
    forget_agents_tokens(env)
    say(f"Removed the login for {key}" + _environment_note(env, key))


def forget_agents_tokens(env: Mapping[str, str]) -> None:
    """This command served itself: the agent may still hold an answer of the helper for the registry
    (credbridge.stores.router.tokencache), so it forgets them all (the next get asks the helper again)."""
    from credbridge import wire
    from credbridge.serve import tell_agent

    directory = wire.agent_dir(env)
    if wire.private_dir_is_safe(directory):
        tell_agent(wire.socket_in(str(directory)), "forget-tokens")


def _environment_note(env: Mapping[str, str], key: str) -> str:
    """A login the environment supplies cannot be logged out of: say so rather than claim it is gone."""
    from credbridge.stores.environment import EnvironmentSource

    try:
        EnvironmentSource(env).get(key)
    except HelperError:
        return ""
    return "; the environment still supplies one: unset the variables `credbridge config` lists"


def list_logins(env: Mapping[str, str], recorded_as: Optional[str]) -> Survey:
    """Every store's logins, recorded in the audit log as a `list` by the command `recorded_as`; None for doctor,
    which only looks: run by root for another HOME, a log it made would be root's and refuse the user's records."""
    router = RouterStore(env)
    with helperfiles.kept_aside(env):
        if recorded_as is None:
            survey = router.survey()
        else:
            survey = audit.by_command(env, recorded_as, "list", "", router, router.survey)
    return Survey(sorted(_where_really(login, env) for login in survey.logins), survey.unreadable)


def _where_really(login: Login, env: Mapping[str, str]) -> Login:
    """Apptainer without a file of its own reads docker's config.json: a plaintext login found there
    through the apptainer store is in docker's file, not Apptainer's."""
    if login.store != APPTAINER.name:
        return login
    docker_config = dockerconfig.docker_config_path(env)
    if ApptainerFilesStore(env, APPTAINER).readable_authfile() != docker_config:
        return login
    entry = dockerconfig.auths(dockerconfig.load(docker_config) or {}).get(login.server_url)
    if dockerconfig.entry_credentials(login.server_url, entry) is None:
        return login
    return login._replace(store=f"docker config, plaintext ({docker_config}; Apptainer reads it too)")


def render_logins(survey: Survey, as_json: bool) -> str:
    """The logins; each store that could not be read (locked, unreachable) is named with why, not hidden."""
    if as_json:
        rows = [
            {
                "registry": login.server_url,
                "username": login.username,
                "store": login.store,
                "kind": remotetokens.kind_of(login.server_url),
            }
            for login in survey.logins
        ]
        rows += [
            {"registry": None, "username": None, "store": store, "unreadable": why}
            for store, why in survey.unreadable.items()
        ]
        return json.dumps(rows, indent=2)
    notes = [printable(f"{store}: not listed: {why}") for store, why in survey.unreadable.items()]
    if not survey.logins:
        return "\n".join(
            ["no logins (log in with `credbridge login REGISTRY`, `docker login` or `podman login`)", *notes]
        )
    rows = [
        ("REGISTRY", "USER", "STORE"),
        *(
            (printable(urls.redacted(login.server_url)), printable(login.username), login.store)
            for login in survey.logins
        ),
    ]  # redacted before the widths are measured: the columns stay aligned
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    return "\n".join([*(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}" for row in rows), *notes])
