"""Endpoint tokens and keyserver logins of Apptainer and SingularityCE: out of remote.yaml, into a store.

`remote login` and `keyserver login` leave them in plaintext in remote.yaml
(both programs, both yaml eras). `credbridge migrate` moves them into a
store under keys that say what they are for, reads each back, and only
then rewrites remote.yaml without them, loadable by the programs' strict
decoders. No docker registry of the same host is ever offered them.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.commands.test_bridge import wait_until
from tests.conftest import Helper, Installation
from tests.support.matrix import NOT_FOUND
from tests.support.process import Result, run
from tests.support.registry import recording_server
from tests.support.strictload import StrictLoader

DATA = Path(__file__).resolve().parents[1] / "data" / "apptainer"
#: key in the store -> (username, secret), as the era files hold them.
HELD = {
    "apptainer-endpoint:cloud.sylabs.io": ("<token>", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"),
    "apptainer-endpoint:library.example.org": ("<token>", "lib-token: with colon #and hash"),
    "apptainer-keyserver:https://keys.example.org": ("alice", "s3cr3t"),
    "apptainer-keyserver:https://keys.sylabs.io": ("<token>", "eyJhbGciOiJIUzI1NiJ9.e30.Zm9v"),
}
#: key -> how its secret is spelled in remote.yaml (a Basic keyserver login is base64 in its Authorization header).
IN_FILE = {key: secret for key, (_username, secret) in HELD.items()} | {
    "apptainer-keyserver:https://keys.example.org": "YWxpY2U6czNjcjN0"
}
WAIT_SECONDS = 60
SAME_HOSTS = [
    "cloud.sylabs.io",
    "https://cloud.sylabs.io",
    "library.example.org",
    "https://library.example.org/",
    "keys.example.org",
    "https://keys.example.org",
    "keys.sylabs.io",
    "https://keys.sylabs.io",
]


class TokenHome:
    """A login session whose ~/.apptainer (yaml.v3 era) and ~/.singularity (yaml.v2 era) hold tokens."""

    def __init__(self, installation: Installation, env: dict[str, str]) -> None:
        self.installation = installation
        self.env = env
        home = Path(env["HOME"])
        self.remote_yamls = {
            "apptainer": home / ".apptainer" / "remote.yaml",
            "singularityce": home / ".singularity" / "remote.yaml",
        }
        for path, era in zip(self.remote_yamls.values(), ("remote-v3-era.yaml", "remote-v2-era.yaml")):
            path.parent.mkdir(mode=0o700)
            shutil.copyfile(DATA / era, path)
            path.chmod(0o600)

    def credbridge(self, *args: str) -> Result:
        return run([self.installation.executable("credbridge"), *args], "", self.env)

    def helper(self, store: str) -> Helper:
        return Helper(self.installation.executable(f"docker-credential-{store}"), self.env)

    def plaintext_left(self) -> dict[str, list[str]]:
        """Every file in both programs' directories (remote.yaml, a backup...) still holding a secret: key names."""
        found = {}
        for directory in {path.parent for path in self.remote_yamls.values()}:
            for path in (path for path in directory.rglob("*") if path.is_file()):
                text = path.read_text(errors="replace")
                found.update({str(path): [key for key, secret in IN_FILE.items() if secret in text]})
        return {path: secrets for path, secrets in found.items() if secrets}

    def snapshot(self) -> dict[str, bytes]:
        return {flavour: path.read_bytes() for flavour, path in self.remote_yamls.items()}


@pytest.fixture
def token_home(installation: Installation, tmp_path: Path) -> TokenHome:
    """Its own HOME and runtime dir; the cryptfile, the router's primary, is unlocked once, as in a user's
    session (its passphrase file stays named, as on a headless machine), and every helper call is served in
    process, so nothing outlives the test."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    for directory in (home, runtime):
        directory.mkdir(mode=0o700)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("token passphrase\n")
    passphrase.chmod(0o600)
    config = home / ".config" / "credbridge" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("primary: cryptfile\n")
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "PATH": f"{installation.bindir}:{os.environ['PATH']}",
        "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase),
        "CREDBRIDGE_NO_AGENT": "1",
    }
    unlocked = run([installation.executable("credbridge"), "unlock", "--new"], "token passphrase\n", env)
    assert unlocked.returncode == 0, unlocked.text + unlocked.stderr.decode()
    return TokenHome(installation, env)


def migrated(home: TokenHome) -> Result:
    done = home.credbridge("migrate", "--to", "cryptfile")
    assert done.returncode == 0, done.text + done.stderr.decode()
    return done


# -- migrate ---------------------------------------------------------------------------------


def test_tokens_and_keyserver_logins_move_into_the_store_and_leave_no_plaintext(
    token_home: TokenHome, strict_loader: StrictLoader
) -> None:
    before = {flavour: strict_loader.remote_yaml(path, flavour) for flavour, path in token_home.remote_yamls.items()}
    assert token_home.plaintext_left()
    migrated(token_home)
    cryptfile = token_home.helper("cryptfile")
    for key, (username, secret) in HELD.items():
        assert json.loads(cryptfile.get(key).stdout) == {"ServerURL": key, "Username": username, "Secret": secret}
    assert token_home.plaintext_left() == {}
    for flavour, path in token_home.remote_yamls.items():
        after = strict_loader.remote_yaml(path, flavour)
        assert path.stat().st_mode & 0o777 == 0o600
        assert after["Active"] == before[flavour]["Active"]
        for name, remote in before[flavour]["Remotes"].items():  # every endpoint stays, its token emptied
            assert after["Remotes"][name] == {**remote, "Token": ""}
        assert after["Credentials"] == [{**entry, "Auth": ""} for entry in before[flavour]["Credentials"]]


def test_a_registry_of_the_same_host_is_never_offered_a_token(token_home: TokenHome) -> None:
    migrated(token_home)
    for store in ("cryptfile", "credbridge"):
        for query in SAME_HOSTS:
            assert token_home.helper(store).get(query).stdout == NOT_FOUND, (store, query)
    authfile = token_home.credbridge("exec", "--store", "cryptfile", "--", "sh", "-c", 'cat "$REGISTRY_AUTH_FILE"')
    assert authfile.returncode == 0, authfile.stderr
    assert json.loads(authfile.stdout) == {"auths": {}}


def test_a_second_run_and_a_dry_run_change_nothing(token_home: TokenHome) -> None:
    dry = token_home.credbridge("migrate", "--to", "cryptfile", "--dry-run")
    assert dry.returncode == 0 and token_home.plaintext_left()
    for key in HELD:
        assert f"would move {key} (Apptainer, {token_home.remote_yamls['apptainer']})" in dry.text
    assert token_home.helper("cryptfile").get("apptainer-endpoint:cloud.sylabs.io").stdout == NOT_FOUND
    migrated(token_home)
    before = token_home.snapshot()
    again = migrated(token_home)
    assert "nothing to move" in again.text
    assert token_home.snapshot() == before


def test_a_different_token_already_in_the_store_is_not_overwritten(token_home: TokenHome) -> None:
    """The two programs' files disagree: the second token stays in its file rather than replace the first."""
    singularity = token_home.remote_yamls["singularityce"]
    singularity.write_text(singularity.read_text().replace("lib-token: with colon #and hash", "an older lib-token"))
    done = migrated(token_home)
    assert f"kept apptainer-endpoint:library.example.org in {singularity}" in done.text
    assert "credbridge logout apptainer-endpoint:library.example.org" in done.text
    stored = json.loads(token_home.helper("cryptfile").get("apptainer-endpoint:library.example.org").stdout)
    assert stored["Secret"] == "lib-token: with colon #and hash"
    assert "an older lib-token" in singularity.read_text()


def test_kill_during_migrate_loses_no_token(token_home: TokenHome, strict_loader: StrictLoader) -> None:
    chance = random.Random(18)
    cryptfile = token_home.helper("cryptfile")
    cryptfile = Helper(cryptfile.path, {**cryptfile.env, "CREDBRIDGE_LIST_TOKENS": "1"})  # tokens listed too
    for _attempt in range(4):
        process = subprocess.Popen(
            [token_home.installation.executable("credbridge"), "migrate", "--to", "cryptfile"],
            env=token_home.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(chance.uniform(0.2, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        listed = cryptfile.list()
        in_store = json.loads(listed.stdout)
        for flavour, path in token_home.remote_yamls.items():
            text = path.read_text()
            strict_loader.remote_yaml(path, flavour)
            for key, secret in IN_FILE.items():
                assert secret in text or key in in_store, f"{key} is neither in {path} nor in the store"
    migrated(token_home)
    assert token_home.plaintext_left() == {}


# -- doctor and list ----------------------------------------------------------------------------


def test_doctor_counts_plaintext_tokens_and_names_migrate(token_home: TokenHome) -> None:
    before = token_home.credbridge("doctor").text
    for path in token_home.remote_yamls.values():
        assert f"4 endpoint token(s) or keyserver login(s) in plaintext in {path}" in before
    assert "credbridge migrate" in before
    migrated(token_home)
    assert "endpoint token(s)" not in token_home.credbridge("doctor").text


def test_list_shows_each_token_with_its_kind(token_home: TokenHome) -> None:
    migrated(token_home)
    listed = json.loads(token_home.credbridge("list", "--json").stdout)
    kinds = {row["registry"]: row["kind"] for row in listed if row["registry"] in HELD}
    assert kinds == {key: "endpoint token" if "endpoint" in key else "keyserver login" for key in HELD}
    assert "apptainer-endpoint:cloud.sylabs.io" in token_home.credbridge("list").text


# -- credbridge exec: a private config directory per program -------------------------------------

#: The command under exec: reports its config directories (entries, links, remote.yaml), then may edit a
#: remote.yaml in place as `remote login`/`logout` do (open O_RDWR|O_CREATE, truncate, write; SingularityCE
#: with O_NOFOLLOW), may create a directory beside it, then may wait for the test to let it go.
CHILD = r"""
import json, os, sys, time

report, plan = sys.argv[1], json.loads(sys.argv[2])
dirs = {name: os.environ[name] for name in ("APPTAINER_CONFIGDIR", "SINGULARITY_CONFIGDIR")}
def entry(path):
    return os.readlink(path) if os.path.islink(path) else "file"
facts = {"pid": os.getpid(), "dirs": dirs,
         "entries": {name: {e: entry(os.path.join(d, e)) for e in os.listdir(d)} for name, d in dirs.items()},
         "modes": {name: os.stat(d).st_mode & 0o777 for name, d in dirs.items()},
         "remote_yaml": {name: open(os.path.join(d, "remote.yaml")).read() for name, d in dirs.items()
                         if os.path.exists(os.path.join(d, "remote.yaml"))}}
if plan.get("edit"):
    variable, old, new = plan["edit"]
    flags = os.O_RDWR | os.O_CREAT | (os.O_NOFOLLOW if variable.startswith("SINGULARITY") else 0)
    with open(os.open(os.path.join(dirs[variable], "remote.yaml"), flags, 0o600), "r+") as changed:
        text = changed.read()
        assert old in text, text
        changed.seek(0)
        changed.truncate(0)
        changed.write(text.replace(old, new, 1))
if plan.get("docker_config"):  # `registry login`/`logout`: docker/cli's Save renames a file over it
    variable, server, auth = plan["docker_config"]
    path = os.path.join(dirs[variable], "docker-config.json")
    config = json.load(open(path))
    if auth is None:
        del config["auths"][server]
    else:
        config["auths"][server] = {"auth": auth}
    with open(path + ".new", "w") as new:
        new.write(json.dumps(config, indent="\t"))
    os.rename(path + ".new", path)
for variable, name in plan.get("create", []):  # a directory the program makes, as `key newpair` makes keys
    os.mkdir(os.path.join(dirs[variable], name), 0o700)
    with open(os.path.join(dirs[variable], name, "pgp-public"), "w") as created:
        created.write("a public keyring")
with open(report + ".tmp", "w") as out:
    json.dump(facts, out)
os.rename(report + ".tmp", report)
deadline = time.monotonic() + 120
while plan.get("wait") and not os.path.exists(report + ".go") and time.monotonic() < deadline:
    time.sleep(0.05)
"""
NEW_REMOTE_V2 = (
    "Remotes:\n  newlib:\n    URI: newlib.example.org\n    Token: fresh-token-of-remote-login\n"
    "    System: false\n    Exclusive: false\n"
)
SYLABS_TOKEN_V3 = f"        Token: {HELD['apptainer-endpoint:cloud.sylabs.io'][1]}\n"


class Exec:
    """`credbridge exec --store cryptfile -- CHILD plan` in the token home; its command's report."""

    def __init__(self, home: TokenHome, tmp_path: Path, **plan: object) -> None:
        self.report = tmp_path / f"report-{time.monotonic_ns()}.json"
        argv = [
            home.installation.executable("credbridge"),
            "exec",
            "--store",
            "cryptfile",
            "--",
            sys.executable,
            "-c",
            CHILD,
            str(self.report),
            json.dumps(plan),
        ]
        self.process = subprocess.Popen(
            argv, env=home.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def facts(self) -> dict:
        wait_until(lambda: self.report.exists() or self.process.poll() is not None, "the command to report")
        assert self.report.exists(), self.process.communicate(timeout=WAIT_SECONDS)
        return json.loads(self.report.read_text())

    def finish(self) -> None:
        Path(f"{self.report}.go").touch()
        _out, err = self.process.communicate(timeout=WAIT_SECONDS)
        assert self.process.returncode == 0, err


def loaded_text(strict_loader: StrictLoader, tmp_path: Path, text: str, flavour: str) -> dict:
    path = tmp_path / f"given-{flavour}.yaml"
    path.write_text(text)
    return strict_loader.remote_yaml(path, flavour)  # type: ignore[arg-type]


def test_exec_gives_each_program_a_private_directory_with_the_tokens_and_links_to_the_rest(
    token_home: TokenHome, strict_loader: StrictLoader, tmp_path: Path
) -> None:
    real = token_home.remote_yamls["apptainer"].parent
    (real / "keys").mkdir(mode=0o700)
    (real / "remote-cache").mkdir(mode=0o700)
    migrated(token_home)
    before = token_home.snapshot()
    running = Exec(token_home, tmp_path)
    facts = running.facts()
    running.finish()
    apptainer_dir, singularity_dir = facts["dirs"]["APPTAINER_CONFIGDIR"], facts["dirs"]["SINGULARITY_CONFIGDIR"]
    assert apptainer_dir != singularity_dir and set(facts["modes"].values()) == {0o700}
    assert facts["entries"]["APPTAINER_CONFIGDIR"]["keys"] == str(real / "keys")
    assert facts["entries"]["APPTAINER_CONFIGDIR"]["remote-cache"] == str(real / "remote-cache")
    assert facts["entries"]["APPTAINER_CONFIGDIR"]["remote.yaml"].startswith("/proc/")  # exec's memory file
    assert facts["entries"]["SINGULARITY_CONFIGDIR"]["remote.yaml"] == "file"  # SingularityCE: O_NOFOLLOW
    for variable, flavour in (("APPTAINER_CONFIGDIR", "apptainer"), ("SINGULARITY_CONFIGDIR", "singularityce")):
        given = loaded_text(strict_loader, tmp_path, facts["remote_yaml"][variable], flavour)
        assert given["Remotes"]["SylabsCloud"]["Token"] == HELD["apptainer-endpoint:cloud.sylabs.io"][1]
        assert given["Remotes"]["mylibrary"]["Token"] == HELD["apptainer-endpoint:library.example.org"][1]
        assert [entry["Auth"] for entry in given["Credentials"]][2:] == [
            "Basic YWxpY2U6czNjcjN0",
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.Zm9v",
        ]
    assert not Path(apptainer_dir).exists() and not Path(singularity_dir).exists()
    assert token_home.snapshot() == before  # nothing changed: nothing written home


def test_a_remote_login_inside_exec_comes_home_encrypted_and_a_logout_erases_it(
    token_home: TokenHome, strict_loader: StrictLoader, tmp_path: Path
) -> None:
    migrated(token_home)
    login = Exec(
        token_home,
        tmp_path,
        edit=["SINGULARITY_CONFIGDIR", "Remotes:\n", NEW_REMOTE_V2],
        create=[["SINGULARITY_CONFIGDIR", "keys"]],
    )
    login.facts()
    login.finish()
    assert (token_home.remote_yamls["singularityce"].parent / "keys" / "pgp-public").read_text() == "a public keyring"
    cryptfile = token_home.helper("cryptfile")
    stored = json.loads(cryptfile.get("apptainer-endpoint:newlib.example.org").stdout)
    assert stored["Secret"] == "fresh-token-of-remote-login"
    home = strict_loader.remote_yaml(token_home.remote_yamls["singularityce"], "singularityce")
    assert (home["Remotes"]["newlib"]["URI"], home["Remotes"]["newlib"]["Token"]) == ("newlib.example.org", "")
    assert "fresh-token" not in token_home.remote_yamls["singularityce"].read_text()
    assert token_home.plaintext_left() == {}

    logout = Exec(token_home, tmp_path, edit=["APPTAINER_CONFIGDIR", SYLABS_TOKEN_V3, ""])
    logout.facts()
    logout.finish()
    assert cryptfile.get("apptainer-endpoint:cloud.sylabs.io").stdout == NOT_FOUND
    assert cryptfile.get("apptainer-endpoint:library.example.org").returncode == 0  # only what was logged out
    home = strict_loader.remote_yaml(token_home.remote_yamls["apptainer"], "apptainer")
    assert home["Remotes"]["SylabsCloud"]["URI"] == "cloud.sylabs.io" and token_home.plaintext_left() == {}


REGISTRY_STUB_V3 = "Credentials:\n    - URI: docker://new.example.org:5000\n      Insecure: false\n"
NEW_LOGIN = ("new.example.org:5000", "alice", "registry-login-secret")


def test_a_registry_login_inside_exec_comes_home_encrypted_and_a_registry_logout_erases_it(
    token_home: TokenHome, strict_loader: StrictLoader, tmp_path: Path
) -> None:
    """`registry login` writes the secret into the private docker-config.json (a stub into
    remote.yaml); `registry logout` rewrites it without the registry. Neither goes home as it is."""
    migrated(token_home)
    cryptfile = token_home.helper("cryptfile")
    assert cryptfile.store(*REGISTRY_LOGIN).returncode == 0
    server, username, secret = NEW_LOGIN
    auth = base64.b64encode(f"{username}:{secret}".encode()).decode()
    login = Exec(
        token_home,
        tmp_path,
        docker_config=["APPTAINER_CONFIGDIR", server, auth],
        edit=["APPTAINER_CONFIGDIR", "Credentials:\n", REGISTRY_STUB_V3],
    )
    login.facts()
    login.finish()
    assert json.loads(cryptfile.get(server).stdout) == {"ServerURL": server, "Username": username, "Secret": secret}
    assert cryptfile.get(REGISTRY_LOGIN[0]).returncode == 0
    home = strict_loader.remote_yaml(token_home.remote_yamls["apptainer"], "apptainer")
    assert {"URI": f"docker://{server}", "Insecure": False} in [
        {key: entry[key] for key in ("URI", "Insecure")} for entry in home["Credentials"]
    ]
    everywhere = [
        path
        for root in (token_home.env["XDG_RUNTIME_DIR"], token_home.env["HOME"])
        for path in Path(root).rglob("*")
        if path.is_file()
    ]
    assert [
        path for path in everywhere if secret.encode() in path.read_bytes() or auth.encode() in path.read_bytes()
    ] == []

    logout = Exec(token_home, tmp_path, docker_config=["SINGULARITY_CONFIGDIR", REGISTRY_LOGIN[0], None])
    logout.facts()
    logout.finish()
    assert cryptfile.get(REGISTRY_LOGIN[0]).stdout == NOT_FOUND
    assert cryptfile.get(server).returncode == 0  # only what was logged out


def test_a_keyserver_login_inside_exec_comes_home_encrypted(token_home: TokenHome, tmp_path: Path) -> None:
    """`keyserver login` adds a Credentials entry (a whole Authorization header) to remote.yaml."""
    migrated(token_home)
    header = "Basic " + base64.b64encode(b"bob:keyserver-secret").decode()
    entry = f"Credentials:\n    - URI: https://keys.new.example.org\n      Auth: {header}\n      Insecure: false\n"
    login = Exec(token_home, tmp_path, edit=["APPTAINER_CONFIGDIR", "Credentials:\n", entry])
    login.facts()
    login.finish()
    key = "apptainer-keyserver:https://keys.new.example.org"
    stored = json.loads(token_home.helper("cryptfile").get(key).stdout)
    assert (stored["Username"], stored["Secret"]) == ("bob", "keyserver-secret")
    assert "keyserver-secret" not in token_home.remote_yamls["apptainer"].read_text()
    assert header.split()[1] not in token_home.remote_yamls["apptainer"].read_text()


def holds_a_token(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # a lock file let go of meanwhile
        return False
    return any(secret.encode() in data for secret in IN_FILE.values())


def test_a_sigkilled_exec_leaves_no_plaintext_token(token_home: TokenHome, tmp_path: Path) -> None:
    migrated(token_home)
    running = Exec(token_home, tmp_path, wait=True)
    facts = running.facts()
    running.process.send_signal(signal.SIGKILL)
    running.process.wait(timeout=WAIT_SECONDS)
    try:
        exec_dirs = {Path(path).parent for path in facts["dirs"].values()}  # removed last, after what it holds
        wait_until(lambda: not any(path.exists() for path in exec_dirs), "the watcher to remove exec's directory")
        everywhere = [
            path
            for root in (token_home.env["XDG_RUNTIME_DIR"], token_home.env["HOME"])
            for path in Path(root).rglob("*")
            if path.is_file()
        ]
        assert [path for path in everywhere if holds_a_token(path)] == []
    finally:
        os.kill(facts["pid"], signal.SIGTERM)  # the orphaned command


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (exec's watcher and command), read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.mark.parametrize("next_invocation", ["credbridge list", "agent start"])
def test_a_whole_group_killed_leaves_the_plaintext_only_until_the_next_invocation(
    token_home: TokenHome, tmp_path: Path, next_invocation: str
) -> None:
    """A cgroup or job kill takes exec's watcher with it: SingularityCE's remote.yaml (a file: it
    will not follow a link) stays behind; the next credbridge command, or the agent, removes it."""
    migrated(token_home)
    running = Exec(token_home, tmp_path, wait=True)
    facts = running.facts()
    exec_dir = Path(facts["dirs"]["SINGULARITY_CONFIGDIR"]).parent
    group: list[int] = []
    while len(group) < len(stopped := [running.process.pid, *descendants(running.process.pid)]):
        group = stopped  # stopped at once, as cgroup.kill does: a process killed first would let exec or its
        for pid in group:  # watcher clean up before their own kill; listed again, in case one forked meanwhile
            os.kill(pid, signal.SIGSTOP)
    for pid in group:
        os.kill(pid, signal.SIGKILL)
    running.process.wait(timeout=WAIT_SECONDS)
    time.sleep(1)
    assert holds_a_token(exec_dir / "singularity" / "remote.yaml")  # nobody left to remove it
    if next_invocation == "credbridge list":
        assert token_home.credbridge("list").returncode == 0
    else:
        agent_env = {key: value for key, value in token_home.env.items() if key != "CREDBRIDGE_NO_AGENT"}
        agent = subprocess.Popen(
            [token_home.installation.executable("credbridge"), "agent"],
            env=agent_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: not exec_dir.exists() or agent.poll() is not None, "the agent to sweep")
        finally:
            agent.kill()
            agent.wait(timeout=WAIT_SECONDS)
    assert not exec_dir.exists()


def test_concurrent_execs_do_not_see_each_others_directories(token_home: TokenHome, tmp_path: Path) -> None:
    migrated(token_home)
    first = Exec(token_home, tmp_path, edit=["SINGULARITY_CONFIGDIR", "Remotes:\n", NEW_REMOTE_V2], wait=True)
    first_facts = first.facts()
    second = Exec(token_home, tmp_path, wait=True)
    second_facts = second.facts()
    try:
        assert set(first_facts["dirs"].values()).isdisjoint(second_facts["dirs"].values())
        assert "fresh-token" not in second_facts["remote_yaml"]["SINGULARITY_CONFIGDIR"]
    finally:
        second.finish()
        first.finish()
    assert (
        json.loads(token_home.helper("cryptfile").get("apptainer-endpoint:newlib.example.org").stdout)["Secret"]
        == "fresh-token-of-remote-login"
    )


# -- the programs' own files, before any migrate ----------------------------------------------------


def test_tokens_still_in_remote_yaml_are_served_only_under_their_kind(token_home: TokenHome) -> None:
    """docker-credential-apptainer/-singularity (and the router reading them) answer a registry of the same host
    "not found", and the token under its endpoint key; a logout of that key clears it from the file."""
    for store in ("apptainer", "singularity", "credbridge"):
        helper = token_home.helper(store)
        for query in SAME_HOSTS:
            assert helper.get(query).stdout == NOT_FOUND, (store, query)
        for key, (username, secret) in HELD.items():
            assert json.loads(helper.get(key).stdout) == {"ServerURL": key, "Username": username, "Secret": secret}
        # no registry's: docker build would send them to the daemon
        assert set(json.loads(helper.list().stdout)).isdisjoint(HELD)
    done = token_home.credbridge("logout", "apptainer-endpoint:cloud.sylabs.io")
    assert done.returncode == 0, done.stderr
    assert all("cloud.sylabs.io" not in keys for keys in token_home.plaintext_left().values())
    assert token_home.helper("credbridge").get("apptainer-endpoint:cloud.sylabs.io").stdout == NOT_FOUND


# -- registry clients: the protocol's `list` names registries only --------------------------------

REGISTRY_LOGIN = ("registry.example.org", "builder", "registry-secret")
TOKENS_HELD = [*IN_FILE.values(), *(secret for _username, secret in HELD.values())]


def with_a_registry_login(home: TokenHome, store: str) -> dict[str, str]:
    """The home after migrate plus a registry login; a docker config with `store` as credsStore."""
    migrated(home)
    stored = home.helper("cryptfile").store(*REGISTRY_LOGIN)
    assert stored.returncode == 0, stored.text
    docker_config = Path(home.env["HOME"]) / ".docker"
    docker_config.mkdir(mode=0o700, exist_ok=True)
    (docker_config / "config.json").write_text(json.dumps({"credsStore": store}))
    return {**home.env, "DOCKER_CONFIG": str(docker_config)}


def assert_only_the_registry_login(sent: dict, raw: str) -> None:
    assert set(sent) == {REGISTRY_LOGIN[0]}, sorted(sent)
    assert sent[REGISTRY_LOGIN[0]]["password"] == REGISTRY_LOGIN[2]
    assert not [secret for secret in TOKENS_HELD if secret in raw]


@pytest.mark.parametrize("store", ["cryptfile", "credbridge"])
def test_docker_build_sends_the_daemon_registry_logins_and_no_token(
    token_home: TokenHome, tmp_path: Path, store: str
) -> None:
    """docker CLI's GetAllCredentials gets every key `list` names and sends them all to the daemon
    with a build (X-Registry-Config): a listed token would reach any daemon DOCKER_HOST names."""
    env = with_a_registry_login(token_home, store)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")

    def daemon(_method: str, path: str, _headers: object) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/_ping"):
            return 200, {"API-Version": "1.45", "Content-Type": "text/plain"}, b"OK"
        return 500, {"Content-Type": "application/json"}, b'{"message":"recorded, not built"}'

    docker = shutil.which("docker", path=env["PATH"])
    assert docker, "docker CLI not installed (apt install docker.io)"
    with recording_server("127.0.0.1", daemon) as recorder:
        build_env = {**env, "DOCKER_HOST": recorder.url.replace("http://", "tcp://"), "DOCKER_BUILDKIT": "0"}
        done = subprocess.run(
            [docker, "build", str(context)],
            env=build_env,
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
        sent = recorder.header_values("X-Registry-Config")  # the build's answer may be a broken pipe:
        assert len(sent) == 1, done.stderr  # the recorder answers before reading the context
        [header] = sent
    raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)).decode()
    assert_only_the_registry_login(json.loads(raw), raw)


DOCKER_PY_ALL_CREDENTIALS = r"""
import json, sys
from docker import auth
config = auth.load_config(sys.argv[1], credstore_env=json.loads(sys.argv[2]))
print(json.dumps(config.get_all_credentials()))
"""


@pytest.mark.parametrize("store", ["cryptfile", "credbridge"])
def test_docker_py_all_credentials_hold_no_token(token_home: TokenHome, store: str) -> None:
    """What docker-py's build sends as X-Registry-Config: get for every key `list` names."""
    env = with_a_registry_login(token_home, store)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            DOCKER_PY_ALL_CREDENTIALS,
            str(Path(env["DOCKER_CONFIG"]) / "config.json"),
            json.dumps(env),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    sent = {key: entry for key, entry in json.loads(done.stdout).items() if entry}
    for entry in sent.values():
        entry["password"] = entry.pop("Password", None)
    assert_only_the_registry_login(sent, done.stdout)


def test_podman_logout_all_leaves_the_tokens(token_home: TokenHome, tmp_path: Path) -> None:
    """containers/image's `logout --all` erases every key a helper lists: a token is no login."""
    from tests.clients.test_real_clients import private_podman

    env = with_a_registry_login(token_home, "credbridge")
    containers = tmp_path / "containers"
    containers.mkdir()
    (containers / "registries.conf").write_text('credential-helpers = ["credbridge"]\n')
    (containers / "auth.json").write_text("{}")
    podman_env = {
        **env,
        **private_podman(tmp_path / "podman"),
        "REGISTRY_AUTH_FILE": str(containers / "auth.json"),
        "CONTAINERS_REGISTRIES_CONF": str(containers / "registries.conf"),
    }
    podman = shutil.which("podman", path=env["PATH"])
    assert podman, "podman not installed (apt install podman)"
    done = subprocess.run(
        [podman, "logout", "--all"], env=podman_env, capture_output=True, text=True, timeout=WAIT_SECONDS, check=False
    )
    assert done.returncode == 0, done.stderr
    cryptfile = token_home.helper("cryptfile")
    assert cryptfile.get(REGISTRY_LOGIN[0]).stdout == NOT_FOUND
    for key, (username, secret) in HELD.items():
        assert json.loads(cryptfile.get(key).stdout) == {"ServerURL": key, "Username": username, "Secret": secret}
