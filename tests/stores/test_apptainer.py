"""docker-credential-apptainer / -singularity: Apptainer's and SingularityCE's own files, kept loadable.

The store contract (test_store_contract.py) already runs against both
flavours, and every file a test leaves behind must load in the programs'
strict decoders (tests/support/strictload). Here: what is particular to
those files. Golden inputs come from tests/data/apptainer.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clients.test_real_clients import explain, program, run_tool
from tests.conftest import GO_SECRETSERVICE, SERVING, Helper, Installation, apptainer_files_env
from tests.support.keyring_session import PrivateKeyring, delete_all_docker_items
from tests.support.registry import Registry
from tests.support.strictload import StrictLoader

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "apptainer"
NOT_FOUND = b"credentials not found in native keychain\n"
LOADER_FLAVOUR = {"apptainer": "apptainer", "singularity": "singularityce"}


@dataclass(frozen=True)
class Files:
    """One flavour's helper and the files it works on, in a fresh HOME."""

    flavour: str
    home: Path
    helper: Helper
    loader: StrictLoader

    @property
    def directory(self) -> Path:
        return self.home / f".{self.flavour}"

    @property
    def remote_yaml(self) -> Path:
        return self.directory / "remote.yaml"

    @property
    def authfile(self) -> Path:
        return self.directory / "docker-config.json"

    def put(self, golden: str, target: Path, edit: Any = None) -> None:
        """A golden file in place, as the program would have left it (0600 in a 0700 directory)."""
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = (GOLDEN / golden).read_text()
        if edit is not None:
            text = edit(text)
        target.write_text(text)
        target.chmod(0o600)

    def loaded_remote_yaml(self) -> dict[str, Any]:
        return self.loader.remote_yaml(self.remote_yaml, LOADER_FLAVOUR[self.flavour])

    def store(self, server: str, username: str, secret: str) -> None:
        done = self.helper.store(server, username, secret)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), done.text

    def got(self, server: str) -> dict[str, str]:
        done = self.helper.get(server)
        assert done.returncode == 0, done.text
        return json.loads(done.stdout)

    def listed(self) -> dict[str, str]:
        done = self.helper.list()
        assert done.returncode == 0, done.text
        return json.loads(done.stdout)


def files_for(request: pytest.FixtureRequest, flavour: str, serving: str) -> Files:
    env = apptainer_files_env(flavour)(request, serving)
    helper = Helper(request.getfixturevalue("installation").executable(f"docker-credential-{flavour}"), env)
    return Files(flavour, Path(env["HOME"]), helper, request.getfixturevalue("strict_loader"))


@pytest.fixture(
    params=[(flavour, serving) for flavour in ("apptainer", "singularity") for serving in SERVING],
    ids=lambda param: "-".join(param),
)
def files(request: pytest.FixtureRequest) -> Files:
    return files_for(request, *request.param)


@pytest.fixture(params=SERVING)
def apptainer(request: pytest.FixtureRequest) -> Files:
    return files_for(request, "apptainer", request.param)


def without_helpers(text: str) -> str:
    config = json.loads(without_cred_helpers(text))
    del config["credsStore"]
    return json.dumps(config, indent="\t")


def without_cred_helpers(text: str) -> str:
    """The golden file names helpers not installed here (ecr-login): a list would fail, as docker's does."""
    config = json.loads(text)
    del config["credHelpers"]
    return json.dumps(config, indent="\t")


# -- remote.yaml -----------------------------------------------------------------


@pytest.mark.parametrize("era, nested_indent", [("remote-v2-era.yaml", "  "), ("remote-v3-era.yaml", "    ")])
def test_registry_login_keeps_every_remote_yaml_value_and_its_era(files: Files, era: str, nested_indent: str) -> None:
    files.put(era, files.remote_yaml)
    before = files.loaded_remote_yaml()
    files.store("https://new.example.org:5000/v2/", "carol", "pw")
    after = files.loaded_remote_yaml()
    assert (after["Active"], after["Remotes"]) == (before["Active"], before["Remotes"])
    assert after["Credentials"] == [
        *before["Credentials"],
        {"URI": "docker://new.example.org:5000", "Auth": "", "Insecure": False},
    ]
    second_line = files.remote_yaml.read_text().splitlines()[2]
    assert second_line.startswith(nested_indent) and not second_line.startswith(nested_indent + " "), second_line


def test_relogin_replaces_the_stub_of_the_same_scheme_and_host_keeping_insecure(files: Files) -> None:
    files.put(
        "remote-v3-era.yaml",
        files.remote_yaml,
        lambda text: text.replace(
            "docker://registry.example.org\n      Insecure: false",
            "docker://registry.example.org\n      Insecure: true",
        ),
    )
    files.store("registry.example.org", "bob", "pw")
    files.store("https://registry.example.org/", "bob", "pw2")
    uris = [(entry["URI"], entry["Insecure"]) for entry in files.loaded_remote_yaml()["Credentials"]]
    assert uris.count(("docker://registry.example.org", True)) == 1
    assert ("oras://oras.example.org:5000", True) in uris and len(uris) == 4


def test_keyserver_logins_and_library_tokens_are_served(files: Files) -> None:
    files.put("remote-v3-era.yaml", files.remote_yaml)
    keyserver, endpoint = "apptainer-keyserver:", "apptainer-endpoint:"  # keys no registry's name reaches
    assert files.got(f"{keyserver}https://keys.example.org") == {
        "ServerURL": f"{keyserver}https://keys.example.org",
        "Username": "alice",
        "Secret": "s3cr3t",
    }
    assert files.got(f"{keyserver}https://keys.sylabs.io")["Username"] == "<token>"
    assert files.got(f"{keyserver}https://keys.sylabs.io")["Secret"] == "eyJhbGciOiJIUzI1NiJ9.e30.Zm9v"
    assert files.got(f"{endpoint}library.example.org")["Secret"] == "lib-token: with colon #and hash"
    assert files.listed() == {}  # docker build would send every listed key to the daemon: registry logins only
    asked = Helper(files.helper.path, {**files.helper.env, "CREDBRIDGE_LIST_TOKENS": "1"})  # credbridge's own calls
    assert json.loads(asked.list().stdout) == {
        f"{keyserver}https://keys.example.org": "alice",
        f"{keyserver}https://keys.sylabs.io": "<token>",
        f"{endpoint}cloud.sylabs.io": "<token>",
        f"{endpoint}library.example.org": "<token>",
    }


def test_erase_forgets_the_registry_everywhere_and_keeps_everything_else(files: Files) -> None:
    files.put("remote-v2-era.yaml", files.remote_yaml)
    files.store("registry.example.org", "bob", "pw")
    files.store("other.example.org", "eve", "pw")
    assert files.helper.erase("https://registry.example.org").returncode == 0
    assert files.helper.get("registry.example.org").stdout == NOT_FOUND
    uris = [entry["URI"] for entry in files.loaded_remote_yaml()["Credentials"]]
    assert uris == [
        "oras://oras.example.org:5000",
        "https://keys.example.org",
        "https://keys.sylabs.io",
        "docker://other.example.org",
    ]
    assert list(json.loads(files.authfile.read_text())["auths"]) == ["other.example.org"]


# -- the docker-config authfile ----------------------------------------------------


def test_authfile_keeps_unknown_keys_in_docker_cli_layout(files: Files) -> None:
    files.put("docker-config.json", files.authfile, without_helpers)
    before = json.loads(files.authfile.read_text())
    files.store("new.example.org", "carol", "pa:ss")
    after = json.loads(files.authfile.read_text())
    assert {key: value for key, value in after.items() if key != "auths"} == {
        key: value for key, value in before.items() if key != "auths"
    }
    assert after["auths"] == {**before["auths"], "new.example.org": {"auth": base64.b64encode(b"carol:pa:ss").decode()}}
    assert files.authfile.read_text().startswith('{\n\t"auths": {\n\t\t"https://index.docker.io/v1/"')
    decoded = files.loader.docker_config(files.authfile)["auths"]["new.example.org"]
    assert (decoded["username"], decoded["password"]) == ("carol", "pa:ss")
    assert files.authfile.stat().st_mode & 0o777 == 0o600 and files.directory.stat().st_mode & 0o777 == 0o700


def test_identity_tokens_are_kept_as_docker_does(files: Files) -> None:
    files.store("myregistry.azurecr.io", "<token>", "refresh-token")
    assert json.loads(files.authfile.read_text())["auths"] == {
        "myregistry.azurecr.io": {"identitytoken": "refresh-token"}
    }
    assert files.got("myregistry.azurecr.io")["Secret"] == "refresh-token"


def test_creds_store_in_the_authfile_sends_the_secret_to_that_helper(
    files: Files, private_keyring: PrivateKeyring
) -> None:
    """docker/cli semantics, as the programs read the file: the Go secretservice helper holds it, the file a `{}`."""
    helper = Helper(
        files.helper.path,
        {**files.helper.env, "DBUS_SESSION_BUS_ADDRESS": private_keyring.env["DBUS_SESSION_BUS_ADDRESS"]},
    )
    delete_all_docker_items(private_keyring.env)
    files.put("docker-config.json", files.authfile, without_cred_helpers)
    assert helper.store("delegated.example.org", "dora", "kept-in-keyring").returncode == 0
    assert json.loads(files.authfile.read_text())["auths"]["delegated.example.org"] == {}
    assert "kept-in-keyring" not in files.authfile.read_text()
    go = Helper(GO_SECRETSERVICE, private_keyring.env)
    assert json.loads(go.get("delegated.example.org").stdout)["Secret"] == "kept-in-keyring"
    assert json.loads(helper.get("delegated.example.org").stdout)["Secret"] == "kept-in-keyring"
    assert json.loads(helper.list().stdout)["delegated.example.org"] == "dora"
    assert helper.erase("delegated.example.org").returncode == 0
    assert go.get("delegated.example.org").stdout == NOT_FOUND


def test_a_config_naming_this_helper_answers_instead_of_recursing(files: Files) -> None:
    files.directory.mkdir(mode=0o700)
    files.authfile.write_text(json.dumps({"credsStore": files.flavour, "credHelpers": {"loop.example": files.flavour}}))
    files.authfile.chmod(0o600)
    started = time.monotonic()
    assert files.helper.get("loop.example").stdout == NOT_FOUND
    assert files.listed() == {}
    assert time.monotonic() - started < 10


def test_authfile_variable_moves_the_authfile(files: Files, tmp_path: Path) -> None:
    variable = {"apptainer": "APPTAINER_AUTH_FILE", "singularity": "SINGULARITY_AUTHFILE"}[files.flavour]
    elsewhere = tmp_path / "private" / "auth.json"
    helper = Helper(files.helper.path, {**files.helper.env, variable: str(elsewhere)})
    assert helper.store("moved.example.org", "mo", "pw").returncode == 0
    assert "moved.example.org" in json.loads(elsewhere.read_text())["auths"]
    assert not files.authfile.exists()
    assert json.loads(helper.get("moved.example.org").stdout)["Username"] == "mo"


def test_only_apptainer_falls_back_to_docker_config_json(files: Files) -> None:
    docker = files.home / ".docker" / "config.json"
    docker.parent.mkdir(mode=0o700)
    docker.write_text(json.dumps({"auths": {"docker-only.example": {"auth": base64.b64encode(b"dan:pw").decode()}}}))
    docker.chmod(0o600)
    answer = files.helper.get("docker-only.example")
    if files.flavour == "apptainer":
        assert json.loads(answer.stdout)["Username"] == "dan"
        files.store("own.example", "o", "pw")  # its own file now exists: that is the one Apptainer reads
        assert files.helper.get("docker-only.example").stdout == NOT_FOUND
    else:
        assert answer.stdout == NOT_FOUND


def test_apptainer_first_use_adopts_singularity_files(apptainer: Files) -> None:
    """Apptainer copies ~/.singularity's files when ~/.apptainer does not exist yet; our first write must not stop
    that."""
    apptainer.put("remote-v2-era.yaml", apptainer.home / ".singularity" / "remote.yaml")
    apptainer.put("docker-config.json", apptainer.home / ".singularity" / "docker-config.json", without_helpers)
    apptainer.store("new.example.org", "carol", "pw")
    assert apptainer.got("registry.example.org")["Username"] == "bob"
    assert apptainer.got("apptainer-keyserver:https://keys.example.org")["Username"] == "alice"
    assert "docker://new.example.org" in [entry["URI"] for entry in apptainer.loaded_remote_yaml()["Credentials"]]


# -- crashes -----------------------------------------------------------------------


def test_sigkill_during_logins_leaves_loadable_files_with_every_acknowledged_login(
    installation: Installation, request: pytest.FixtureRequest
) -> None:
    files = files_for(request, "apptainer", "direct")
    files.put("remote-v3-era.yaml", files.remote_yaml)
    chance = random.Random(7)
    acknowledged: dict[str, str] = {}
    killed = 0
    for attempt in range(30):
        server = f"crash-{attempt}.example"
        process = subprocess.Popen(
            [files.helper.path, "store"],
            env=files.helper.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process.stdin.write(json.dumps({"ServerURL": server, "Username": f"u{attempt}", "Secret": "s"}).encode())
        process.stdin.close()
        time.sleep(chance.uniform(0.0, 0.4))  # an in-process store takes ~0.2 s: kills land before, during and after
        process.send_signal(signal.SIGKILL)
        if process.wait(timeout=30) == 0:
            acknowledged[server] = f"u{attempt}"
        else:
            killed += 1
        files.loaded_remote_yaml()
        files.loader.docker_config(files.authfile) if files.authfile.exists() else None
        assert acknowledged.items() <= files.listed().items()
    assert killed and acknowledged, (killed, len(acknowledged))


# -- real clients ----------------------------------------------------------------------


def test_docker_login_through_the_helper_serves_skopeo_reading_apptainers_authfile(
    files: Files, registry: Registry, tmp_path: Path
) -> None:
    """docker stores through docker-credential-<flavour>; skopeo, reading the program's authfile directly, pulls."""
    docker_config = tmp_path / "docker"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": files.flavour}))
    env = {**files.helper.env, "DOCKER_CONFIG": str(docker_config)}
    login = run_tool(
        [program("docker", env), "login", registry.host, "-u", registry.username, "--password-stdin"],
        env,
        registry.password + "\n",
    )
    assert login.returncode == 0, explain(login)
    assert registry.password not in (docker_config / "config.json").read_text()
    files.loader.docker_config(files.authfile)
    assert f"docker://{registry.host}" in [entry["URI"] for entry in files.loaded_remote_yaml()["Credentials"]]
    inspect = run_tool(
        [
            program("skopeo", env),
            "inspect",
            "--tls-verify=false",
            "--authfile",
            str(files.authfile),
            f"docker://{registry.test_image}",
        ],
        env,
    )
    assert inspect.returncode == 0, explain(inspect)
    logout = run_tool([program("docker", env), "logout", registry.host], env)
    assert logout.returncode == 0, explain(logout)
    assert registry.host not in json.loads(files.authfile.read_text()).get("auths", {})
    denied = run_tool(
        [
            program("skopeo", env),
            "inspect",
            "--tls-verify=false",
            "--authfile",
            str(files.authfile),
            f"docker://{registry.test_image}",
        ],
        env,
    )
    assert denied.returncode != 0
    shutil.rmtree(docker_config)
