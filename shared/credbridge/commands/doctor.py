"""credbridge doctor and credbridge config: one screen a person can act on.

Each check is a line with a status (`fail` exits 1) and the command that fixes what is wrong;
nothing here prints a secret (docs/design.md, "doctor").
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, NamedTuple, Optional, TextIO

from credbridge import urls
from credbridge.commands import migrate
from credbridge.commands.terminal import printable
from credbridge.errors import HelperError
from credbridge.files import config, dockerconfig, registriesconf, remotetokens, remoteyaml
from credbridge.helperclient import find_program
from credbridge.stores.apptainer import APPTAINER, REMOTE_YAML_NAME, SINGULARITY, ApptainerFilesStore, config_dir
from credbridge.stores.catalog import PROGRAMS
from credbridge.stores.environment import (
    AUTH_CONFIG_VARIABLE,
    GLOBAL_PAIRS,
    PER_REGISTRY_PREFIX,
    SCOPE_VARIABLE,
    environment_logins,
)
from credbridge.stores.router import helperfiles, routing

CONTAINERS_TOOLS = ("podman", "skopeo", "buildah")
#: How long `doctor` waits for a routed helper whose route sets no `timeout`.
ROUTED_HELPER_SECONDS = 10.0
_MARKS = {"ok": ("✔", "32"), "warn": ("!", "33"), "fail": ("✘", "31")}


class Check(NamedTuple):
    topic: str
    status: str  # ok | warn | fail
    summary: str
    fix: str = ""


class Report(NamedTuple):
    registry: str
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(check.status != "fail" for check in self.checks)


# -- credbridge config ----------------------------------------------------------------------------


def effective_config(env: Mapping[str, str]) -> dict[str, Any]:
    """What the router will do, and why; raises HelperError for a config file it cannot use."""
    from credbridge.stores.router.store import default_primary

    path = config.config_path(env)
    settings = routing.load_routing(env)
    primary, reason = settings.primary, "set in the config file"
    if primary is None:
        primary = default_primary(env)
        reason = (
            "default: a Secret Service runs on the session bus"
            if primary == "keyring"
            else "default: no Secret Service on the session bus, as on a headless machine"
        )
    variables = sorted(
        name
        for name in env
        if name.startswith(PER_REGISTRY_PREFIX)
        or name == SCOPE_VARIABLE
        or name == AUTH_CONFIG_VARIABLE
        or any(name in pair for pair in GLOBAL_PAIRS)
    )
    return {
        "file": path,
        "file_exists": os.path.exists(path),
        "primary": primary,
        "primary_reason": reason,
        "routes": [{"pattern": route.pattern, "store": route.store, **route.settings()} for route in settings.routes],
        "read": list(settings.read),
        "environment_variables": variables,
        "environment_logins": [login._asdict() for login in environment_logins(env)],
    }


def render_config(effective: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(effective, indent=2)
    lines = [
        f"config file: {effective['file']}" + ("" if effective["file_exists"] else " (absent: defaults apply)"),
        f"primary:     {effective['primary']} ({effective['primary_reason']})",
        "routes:      "
        + (
            ", ".join(
                f"{route['pattern']} -> {route['store']}{_settings_shown(route)}" for route in effective["routes"]
            )
            or "none"
        ),
        "read order:  " + " -> ".join(effective["read"]),
        "environment: " + (", ".join(effective["environment_variables"]) or "no credential variables set"),
    ]
    lines += [f"  {_environment_login_line(login)}" for login in effective["environment_logins"]]
    return "\n".join(lines)


def _settings_shown(route: dict[str, Any]) -> str:
    """` (ttl 900 s, timeout 10 s, env AWS_PROFILE)`, or "" for a route without settings."""
    shown = [f"{name} {route[name]:g} s" for name in ("ttl", "timeout") if name in route]
    shown += [f"env {', '.join(route['env'])}"] if "env" in route else []
    return f" ({', '.join(shown)})" if shown else ""


def _environment_login_line(login: dict[str, Any]) -> str:
    """`VARIABLES -> registries`, or why they go nowhere (names only: a value is never shown)."""
    problem = f"{login['problem']}: {login['fix']}" if login["problem"] else ""
    bound = ", ".join(login["registries"])
    return f"{'/'.join(login['variables'])} -> " + (f"{bound} ({problem})" if bound and problem else problem or bound)


# -- credbridge doctor ----------------------------------------------------------------------------


def examine(env: Mapping[str, str], registry: str, write_test: bool = False) -> Report:
    """`write_test`: prove the keyring with a throwaway login rather than trust that it looks unlocked."""
    router, effective = _router_check(env)
    writes_to = {effective["primary"], *(route["store"] for route in effective["routes"])} if effective else set()
    checks = [router]
    if effective:
        with helperfiles.kept_aside(env):
            checks += [_login_check(env, registry), *_routed_helper_checks(env)]
    checks += _tool_checks(env, registry)
    checks += [
        _keyring_check(env, in_use="keyring" in writes_to, write_test=write_test),
        _cryptfile_check(env, in_use="cryptfile" in writes_to),
    ]
    checks += _plaintext_checks(env) + _permission_checks(env) + _secret_file_checks(env) + _shadow_checks(env)
    checks += _environment_checks(env) + [_audit_check(env)]
    return Report(registry, [check for check in checks if check is not None])


def _router_check(env: Mapping[str, str]) -> tuple[Check, Optional[dict[str, Any]]]:
    try:
        effective = effective_config(env)
    except HelperError as error:
        return Check("router", "fail", str(error), f"edit {config.config_path(env)}"), None
    return Check(
        "router",
        "ok",
        f"writes to {effective['primary']} ({effective['primary_reason']}); reads {' -> '.join(effective['read'])}",
    ), effective


def _routed_helper_checks(env: Mapping[str, str]) -> list[Check]:
    """Each helper not ours a route names (ecr-login, gcr, ...) is on PATH and answers `list`."""
    from credbridge.stores.catalog import STORES
    from credbridge.stores.router.external import own_files, program_for

    checks = []
    for route in routing.load_routing(env).routes:
        if route.store in STORES:
            continue
        deadline = route.timeout or ROUTED_HELPER_SECONDS
        program = program_for(route.store, env, route._replace(timeout=deadline), own_files())
        where = f"route {route.pattern}"
        if not _on_path(program.program, env):
            checks.append(
                Check(
                    "helper",
                    "fail",
                    f"{program.program} ({where}) is not on PATH",
                    f"install it, or change the route in {config.config_path(env)}",
                )
            )
            continue
        try:
            program.list()
        except HelperError as error:
            checks.append(Check("helper", "fail", str(error), f"{program.program} list"))
            continue
        checks.append(Check("helper", "ok", f"{program.program} answers ({where})"))
    return checks


def _tool_checks(env: Mapping[str, str], registry: str) -> list[Check]:
    checks = []
    if _on_path("docker", env):
        path = dockerconfig.docker_config_path(env)
        checks.append(_docker_format_check("docker", path, registry, env))
    for tool in CONTAINERS_TOOLS:
        if _on_path(tool, env):
            helpers, source = registriesconf.effective_helpers(env)
            named = [name for name in helpers if name != registriesconf.AUTH_FILES]
            checks.append(_helper_check(tool, named[0] if named else None, "credential-helpers", source, env))
    for flavour in (APPTAINER, SINGULARITY):
        if _on_path(flavour.name, env):
            path = ApptainerFilesStore(env, flavour).readable_authfile()  # Apptainer may read docker's instead
            checks.append(_docker_format_check(flavour.name, path, registry, env))
    return checks


def _docker_format_check(tool: str, path: str, registry: str, env: Mapping[str, str]) -> Check:
    try:
        document = dockerconfig.load(path) or {}
    except HelperError as error:
        return Check(tool, "fail", str(error), f"fix or remove {path}")
    key = "credHelpers" if registry in dockerconfig.registry_helpers(document) else "credsStore"
    return _helper_check(tool, dockerconfig.helper_for(document, registry), key, path, env)


def _helper_check(tool: str, helper: Optional[str], key: str, where: str, env: Mapping[str, str]) -> Check:
    """`key` in `where` names `helper` (None: no helper is set there)."""
    why = f"{key} in {where}"
    if helper is None:
        return Check(
            tool,
            "warn",
            f"{tool} keeps logins in plaintext files: no helper is set ({where})",
            f"credbridge setup --tool {tool}",
        )
    program = f"docker-credential-{helper}"
    if not _on_path(program, env):
        return Check(
            tool,
            "fail",
            f"{tool} calls {program} ({why}), which is not on PATH",
            f"install it, or credbridge setup --tool {tool}",
        )
    return Check(tool, "ok", f"{tool} calls {program} ({why})")


def _login_check(env: Mapping[str, str], registry: str) -> Check:
    """Whether the router finds a login for `registry`, and which store holds it: the first question when
    a pull is refused (names only, never a secret)."""
    from credbridge.commands import logins

    try:
        survey = logins.list_logins(env, recorded_as=None)
    except HelperError as error:
        return Check("login", "fail", f"cannot tell whether {registry} has a login: {error}", "credbridge list")
    stores = {login.server_url: login.store for login in survey.logins}
    key = urls.best_match(registry, stores)
    if key is not None:
        spelled = "" if key == registry else f" (as {key})"
        return Check("login", "ok", f"{registry}: a login is kept in {stores[key]}{spelled}")
    if survey.unreadable:
        shut = ", ".join(survey.unreadable)
        return Check(
            "login",
            "warn",
            f"{registry}: no login in the stores that could be read; not read: {shut}",
            "credbridge list  (says why each store could not be read)",
        )
    return Check(
        "login",
        "ok",
        f"{registry}: no login in any store the router reads, so tools pull anonymously "
        f"(`credbridge login {registry}` adds one)",
    )


def _keyring_check(env: Mapping[str, str], in_use: bool, write_test: bool) -> Optional[Check]:
    """`in_use`: the router writes there; else a missing Secret Service is only information."""
    from credbridge.stores.keyring import backend_choice

    if backend_choice(env) != "secretservice":
        return None  # macOS / Windows / a python-keyring backend: nothing to probe on a bus
    from credbridge.stores.secretservice import UNKNOWN_PROVIDER, provider_name, provider_reachable, unlock_advice

    if not provider_reachable(env):
        if not in_use:
            return Check(
                "keyring",
                "ok",
                "no Secret Service on the session bus; not needed: the router does not write to the keyring",
            )
        return Check(
            "keyring",
            "warn",
            "no Secret Service on the session bus, and the router writes to the keyring",
            f"start gnome-keyring or KeePassXC, or set `primary: cryptfile` in {config.config_path(env)}",
        )
    provider = provider_name(env)
    serves = f"{provider} serves the Secret Service" if provider else "the Secret Service runs"
    advice = unlock_advice(provider or UNKNOWN_PROVIDER)
    try:
        import secretstorage

        with secretstorage.dbus_init() as connection:
            locked = secretstorage.get_default_collection(connection).is_locked()
    except Exception as error:  # any D-Bus failure is a finding, not a crash
        return Check(
            "keyring",
            "fail",
            f"{serves} but its default collection is unusable ({type(error).__name__})",
            "open your keyring manager and create a default keyring",
        )
    if locked:
        return Check("keyring", "warn", f"{serves}; its default collection is locked", advice)
    if not write_test:
        return Check(
            "keyring",
            "ok",
            f"{serves} and its default collection is unlocked (`credbridge doctor --write-test` proves a round trip)",
        )
    problem = _keyring_round_trip(env)
    if problem:
        return Check(
            "keyring", "fail", f"{serves} but a throwaway login did not make the round trip: {problem}", advice
        )
    return Check("keyring", "ok", f"{serves}: a throwaway login was stored, read back and erased")


def _keyring_round_trip(env: Mapping[str, str]) -> str:
    """Store, read back and erase a uniquely named throwaway login; what went wrong, or "" if nothing did."""
    import secrets

    from credbridge.errors import CredentialsNotFound
    from credbridge.store import Credentials
    from credbridge.stores.secretservice import SecretServiceStore

    store = SecretServiceStore(env)
    probe = Credentials(f"credbridge-doctor-{secrets.token_hex(8)}.invalid", "credbridge-doctor", secrets.token_hex(16))
    try:
        store.store(probe)
        try:
            read_back = store.get(probe.server_url)
        finally:
            store.erase(probe.server_url)
        left_behind = probe.server_url in store.list()
    except CredentialsNotFound:
        return "the login just stored was not found"
    except HelperError as error:
        return str(error)
    if read_back.secret != probe.secret:
        return "the secret read back differs from the one stored"
    return "it was still there after erase" if left_behind else ""


def _cryptfile_check(env: Mapping[str, str], in_use: bool) -> Optional[Check]:
    """`in_use`: the router writes there, so a locked file means logins fail."""
    from credbridge.commands.tool_setup import unopened_cryptfile
    from credbridge.stores.cryptfile.store import cryptfile_path

    path = cryptfile_path(env)
    exists = os.path.exists(path)
    shut = unopened_cryptfile(env)
    if shut is None:
        return Check("cryptfile", "ok", f"{path} opens for this session") if exists else None
    if not exists:
        return (
            Check("cryptfile", "warn", f"{shut[0]}: logins through the router will fail until it is created", shut[1])
            if in_use
            else None
        )
    return Check("cryptfile", "fail" if in_use else "warn", f"{shut[0]}: tools get no login kept in it", shut[1])


def _plaintext_checks(env: Mapping[str, str]) -> list[Check]:
    checks = []
    for found in migrate.plaintext_files(env):
        try:
            document = dockerconfig.load(found.path) or {}
        except HelperError:
            continue  # reported by the tool's own check
        logins = [
            key
            for key, entry in dockerconfig.auths(document).items()
            if dockerconfig.entry_credentials(key, entry) is not None
        ]
        if logins:
            checks.append(
                Check(
                    "plaintext",
                    "fail",
                    f"{len(logins)} login(s) in plaintext in {found.path} (read by {found.reader})",
                    "credbridge migrate",
                )
            )
    return checks + _plaintext_token_checks(env)


def _plaintext_token_checks(env: Mapping[str, str]) -> list[Check]:
    """Endpoint tokens and keyserver logins that `remote login` left in remote.yaml."""
    checks = []
    for path, reader in migrate.remote_yaml_files(env):
        try:
            held = remotetokens.held_in(remoteyaml.load(path).document)
        except HelperError:
            continue  # not ours to judge here: the program itself names what is wrong with it
        if held:
            checks.append(
                Check(
                    "plaintext",
                    "fail",
                    f"{len(held)} endpoint token(s) or keyserver login(s) in plaintext in {path} (read by {reader})",
                    "credbridge migrate",
                )
            )
    return checks


def _permission_checks(env: Mapping[str, str]) -> list[Check]:
    from credbridge.stores.cryptfile.store import cryptfile_path

    paths = [
        config.config_path(env),
        cryptfile_path(env),
        *(found.path for found in migrate.plaintext_files(env)),
        *(os.path.join(config_dir(env, flavour), REMOTE_YAML_NAME) for flavour in (APPTAINER, SINGULARITY)),
    ]
    checks = []
    for path in dict.fromkeys(paths):
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            checks.append(
                Check("permissions", "fail", f"{path} is mode {mode:04o}: other users may read it", f"chmod 600 {path}")
            )
    return checks


def _secret_file_checks(env: Mapping[str, str]) -> list[Check]:
    """The passphrase file and the Vault token, judged as ssh judges a key (the stores refuse them loose)."""
    from credbridge.files.secretfile import loose
    from credbridge.stores.vault.settings import token_file

    checks = []
    for path in filter(None, (env.get("CREDBRIDGE_PASSPHRASE_FILE"), token_file(env))):
        try:
            problem = loose(path, os.stat(path))
        except OSError:
            continue
        if problem is not None:
            checks.append(
                Check("permissions", "fail", f"{problem[0]}: other users may read or change the secret", problem[1])
            )
    return checks


def _environment_checks(env: Mapping[str, str]) -> list[Check]:
    """Each login held in environment variables, the registries it is offered to, and a pair bound to none."""
    checks = []
    for login in environment_logins(env):
        line = f"{'/'.join(login.variables)} -> " + (login.problem or ", ".join(login.registries))
        checks.append(Check("environment", "warn" if login.problem else "ok", line, login.fix))
    return checks


def _audit_check(env: Mapping[str, str]) -> Check:
    """Whether `credbridge audit` can say which program took a credential."""
    from credbridge import audit

    if not audit.enabled(env):
        return Check(
            "audit",
            "warn",
            "the audit log is off (`audit: false`): no record says which program took which credential",
            f"remove `audit: false` from {config.config_path(env)}",
        )
    hole = audit.unwritable(env)
    if hole is not None:
        return Check("audit", "warn", *hole)
    return Check(
        "audit", "ok", f"every credential served is recorded in {audit.log_path(env)} (`credbridge audit` shows them)"
    )


def _shadow_checks(env: Mapping[str, str]) -> list[Check]:
    checks = []
    for program in PROGRAMS:
        found = _everywhere_on_path(program, env)
        if len(found) > 1:
            checks.append(
                Check(
                    "PATH",
                    "warn",
                    f"{program} is in {len(found)} places; tools run {found[0]}, not {', '.join(found[1:])}",
                    "remove the copies you do not want",
                )
            )
    return checks


def _on_path(program: str, env: Mapping[str, str]) -> bool:
    return find_program(program, env) is not None


def _everywhere_on_path(program: str, env: Mapping[str, str]) -> list[str]:
    found = []
    for directory in dict.fromkeys(env.get("PATH", os.defpath).split(os.pathsep)):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            found.append(os.path.realpath(candidate))
    return list(dict.fromkeys(found))


# -- output ---------------------------------------------------------------------------------------


def use_colour(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and not env.get("NO_COLOR")


def render_report(report: Report, as_json: bool, colour: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "healthy": report.healthy,
                "registry": report.registry,
                "checks": [check._asdict() for check in report.checks],
            },
            indent=2,
        )
    lines = []
    for check in report.checks:
        mark, code = _MARKS[check.status]
        shown = f"\033[{code}m{mark}\033[0m" if colour else mark
        lines.append(f"{shown} {check.topic}: {printable(check.summary)}")
        if check.fix:
            lines.append(f"    fix: {printable(check.fix)}")
    warnings = sum(check.status == "warn" for check in report.checks)
    if not report.healthy:
        verdict = "something needs fixing: see the lines marked ✘"
    else:
        verdict = f"nothing failing, {warnings} warning(s) marked !" if warnings else "all good"
    lines.append(f"registry checked: {printable(report.registry)}; {verdict}")
    return "\n".join(lines)
