"""The strict loader is a trustworthy judge: it accepts what Apptainer/SingularityCE load and refuses what they refuse.

The store tests rely on `strict_loader` to say whether a file we wrote still
loads in the real programs; these tests pin its behaviour on golden files
(tests/data/apptainer/README.md) and on files PyYAML writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import strictload
from tests.support.strictload import StrictLoader

DATA = Path(__file__).resolve().parents[1] / "data" / "apptainer"
FLAVOURS = ("apptainer", "singularityce")

FULL_CONFIG: dict[str, Any] = {
    "Active": "SylabsCloud",
    "Remotes": {
        "SylabsCloud": {
            "URI": "cloud.sylabs.io",
            "Token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
            "System": True,
            "Exclusive": False,
            "Keyservers": [
                {"URI": "https://keys.sylabs.io", "Skip": False, "External": False, "Insecure": False},
                {"URI": "https://keys.example.org", "Skip": True, "External": True, "Insecure": True},
            ],
        },
        "mylibrary": {
            "URI": "library.example.org",
            "Token": "lib-token: with colon #and hash",
            "System": False,
            "Exclusive": True,
            "Keyservers": None,
        },
    },
    "Credentials": [
        {"URI": "docker://registry.example.org", "Auth": "", "Insecure": False},
        {"URI": "oras://oras.example.org:5000", "Auth": "", "Insecure": True},
        {"URI": "https://keys.example.org", "Auth": "Basic YWxpY2U6czNjcjN0", "Insecure": False},
        {"URI": "https://keys.sylabs.io", "Auth": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.Zm9v", "Insecure": False},
    ],
}


def with_endpoint_insecure(config: dict[str, Any]) -> dict[str, Any]:
    """SingularityCE's endpoint.Config has an Insecure field (false when absent); Apptainer's has none."""
    remotes = {name: {**remote, "Insecure": False} for name, remote in config["Remotes"].items()}
    return {**config, "Remotes": remotes}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", ["remote-v2-era.yaml", "remote-v3-era.yaml"])
def test_both_indentation_eras_load_every_value(strict_loader: StrictLoader, name: str, flavour: str) -> None:
    expected = FULL_CONFIG if flavour == "apptainer" else with_endpoint_insecure(FULL_CONFIG)
    assert strict_loader.remote_yaml(DATA / name, flavour) == expected


def test_minimal_remote_yaml_loads(strict_loader: StrictLoader) -> None:
    loaded = strict_loader.remote_yaml(DATA / "remote-minimal.yaml")
    assert loaded["Active"] == "DefaultRemote"
    assert loaded["Remotes"]["DefaultRemote"]["System"] is True
    assert loaded["Credentials"] is None


def test_empty_remote_yaml_is_an_empty_config(strict_loader: StrictLoader) -> None:
    """ReadFrom skips decoding when the file has no bytes at all."""
    assert strict_loader.remote_yaml(DATA / "remote-empty.yaml") == {"Active": "", "Remotes": {}, "Credentials": None}


def test_endpoint_insecure_loads_in_singularityce_but_not_in_apptainer(strict_loader: StrictLoader) -> None:
    path = DATA / "remote-singularityce-insecure.yaml"
    assert strict_loader.remote_yaml(path, "singularityce")["Remotes"]["LocalSCS"]["Insecure"] is True
    with pytest.raises(AssertionError, match=r"line 12: field Insecure not found in type main\.apptainerEndpoint"):
        strict_loader.remote_yaml(path, "apptainer")


BAD_REMOTE_YAML = {
    "bad-remote-unknown-top-level.yaml": r"line 2: field Version not found in type main\.remoteConfig",
    "bad-remote-unknown-in-keyserver.yaml": r"line 12: field Priority not found in type main\.serviceConfig",
    "bad-remote-unknown-in-credential.yaml": r"line 9: field Username not found in type main\.credentialConfig",
    "bad-remote-string-boolean.yaml": r"line 5: cannot unmarshal !!str `true` into bool",
    "bad-remote-scalar-for-list.yaml": r"line 7: cannot unmarshal !!str .* into \[\]\*main\.serviceConfig",
    "bad-remote-duplicate-remote.yaml": r'line 7: mapping key "SylabsCloud" already defined at line 3',
    "bad-remote-tab-indent.yaml": r"yaml: line 3: found character that cannot start any token",
    "bad-remote-null-remote.yaml": r'remote "SylabsCloud" is null: GetRemote would dereference',
    "bad-remote-comment-only.yaml": r"yaml\.v3 era: failed to decode YAML data from io\.Reader: EOF",
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", sorted(BAD_REMOTE_YAML))
def test_bad_remote_yaml_is_refused_with_the_decoder_message(
    strict_loader: StrictLoader, name: str, flavour: str
) -> None:
    with pytest.raises(AssertionError, match=BAD_REMOTE_YAML[name]):
        strict_loader.remote_yaml(DATA / name, flavour)


def test_every_golden_file_is_judged() -> None:
    """A golden file added without a verdict here would prove nothing."""
    judged = {
        "remote-v2-era.yaml",
        "remote-v3-era.yaml",
        "remote-minimal.yaml",
        "remote-empty.yaml",
        "remote-singularityce-insecure.yaml",
        "docker-config.json",
        "README.md",
        *BAD_REMOTE_YAML,
        *BAD_DOCKER_CONFIG,
    }
    assert {path.name for path in DATA.iterdir()} == judged


def test_document_marker_alone_nulls_remotes_in_the_yaml_v2_era(strict_loader: StrictLoader, tmp_path: Path) -> None:
    """yaml.v2 Unmarshal of an empty document zeroes the whole Config, leaving a nil Remotes map."""
    path = tmp_path / "remote.yaml"
    path.write_text("---\n")
    with pytest.raises(AssertionError, match="Remotes is null"):
        strict_loader.remote_yaml(path)


def test_null_remotes_map_is_refused(strict_loader: StrictLoader, tmp_path: Path) -> None:
    path = tmp_path / "remote.yaml"
    path.write_text("Active: SylabsCloud\nRemotes:\n")
    with pytest.raises(AssertionError, match="Remotes is null"):
        strict_loader.remote_yaml(path)


def test_null_scalars_load_as_go_zero_values(strict_loader: StrictLoader, tmp_path: Path) -> None:
    """yaml.v2 and yaml.v3 both leave a field at its zero value for `null`, as Go does."""
    path = tmp_path / "remote.yaml"
    path.write_text("Active: null\nRemotes:\n  r:\n    URI: ~\n    System: null\n    Exclusive: false\n")
    assert strict_loader.remote_yaml(path)["Remotes"]["r"] == {
        "URI": "",
        "Token": "",
        "System": False,
        "Exclusive": False,
        "Keyservers": None,
    }


def test_pyyaml_block_dump_of_the_full_config_loads_unchanged(strict_loader: StrictLoader, tmp_path: Path) -> None:
    """The store may write with PyYAML: its quoting and indentation must mean the same to Go."""
    path = tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump(strip_go_zero_values(FULL_CONFIG), sort_keys=False, default_flow_style=False))
    assert strict_loader.remote_yaml(path) == FULL_CONFIG


def test_pyyaml_none_for_a_remote_is_refused_as_yaml_null(strict_loader: StrictLoader, tmp_path: Path) -> None:
    """Dumping a Python None writes `null`: for a remote entry the programs would crash on it."""
    path = tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump({"Active": "a", "Remotes": {"a": None}}))
    with pytest.raises(AssertionError, match='remote "a" is null'):
        strict_loader.remote_yaml(path)


def strip_go_zero_values(config: dict[str, Any]) -> dict[str, Any]:
    """What Go's Marshal would write: omitempty fields dropped, no nulls."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None and not (k == "Auth" and v == "")}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    cleaned: dict[str, Any] = clean(config)
    return cleaned


yaml_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=yaml_text, auth=yaml_text, uri=yaml_text.filter(bool))
def test_pyyaml_quoted_strings_round_trip_through_both_go_decoders(
    strict_loader: StrictLoader, tmp_path: Path, token: str, auth: str, uri: str
) -> None:
    config = {
        "Active": "r",
        "Remotes": {"r": {"URI": uri, "Token": token, "System": False, "Exclusive": False}},
        "Credentials": [{"URI": uri, "Auth": auth, "Insecure": True}],
    }
    path = tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    loaded = strict_loader.remote_yaml(path)
    assert loaded["Remotes"]["r"]["Token"] == token
    assert loaded["Remotes"]["r"]["URI"] == uri
    assert loaded["Credentials"] == [{"URI": uri, "Auth": auth, "Insecure": True}]


def test_pyyaml_allow_unicode_lets_go_fold_a_next_line_character(strict_loader: StrictLoader, tmp_path: Path) -> None:
    """With allow_unicode=True PyYAML writes U+0085 raw and Go reads a space: the store must keep the default."""
    path = tmp_path / "remote.yaml"
    config = {"Active": "r", "Remotes": {"r": {"Token": "a\x85b", "System": False, "Exclusive": False}}}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert strict_loader.remote_yaml(path)["Remotes"]["r"]["Token"] == "a b"


def test_docker_config_decodes_auths_and_keeps_helpers(strict_loader: StrictLoader) -> None:
    loaded = strict_loader.docker_config(DATA / "docker-config.json")
    auths = loaded["auths"]
    assert auths["https://index.docker.io/v1/"] == {
        "username": "alice",
        "password": "s3cr3t",
        "serveraddress": "https://index.docker.io/v1/",
    }
    assert (auths["registry.example.org"]["username"], auths["registry.example.org"]["password"]) == (
        "bob",
        "p@ss:word",
    )
    assert auths["ghcr.io"]["password"] == "tok/en+x="
    assert auths["myregistry.azurecr.io"]["identitytoken"] == "eyJhbGciOiJSUzI1NiJ9.refresh.token"
    assert auths["quay.io"] == {"serveraddress": "quay.io"}
    assert loaded["credHelpers"]["quay.io"] == "credbridge"
    assert loaded["credsStore"] == "secretservice"
    assert loaded["currentContext"] == "rootless"
    assert "x-future-key" not in loaded


BAD_DOCKER_CONFIG = {
    "bad-docker-config-auth-not-base64.json": r'illegal base64 data at input byte 3 \(auths\["registry\.example\.org"\]\)',  # noqa: E501
    "bad-docker-config-auth-no-colon.json": r"Invalid auth configuration file",
    "bad-docker-config-auth-empty-user.json": r"Invalid auth configuration file",
    "bad-docker-config-credhelpers-list.json": r"cannot unmarshal array into Go struct field .*credHelpers",
    "bad-docker-config-trailing-comma.json": r"invalid character '}' looking for beginning of object key string",
}


@pytest.mark.parametrize("name", sorted(BAD_DOCKER_CONFIG))
def test_bad_docker_config_is_refused_with_the_decoder_message(strict_loader: StrictLoader, name: str) -> None:
    with pytest.raises(AssertionError, match=BAD_DOCKER_CONFIG[name]):
        strict_loader.docker_config(DATA / name)


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_docker_config_loads_with_no_auths(strict_loader: StrictLoader, tmp_path: Path, content: str) -> None:
    """docker/cli tolerates io.EOF, so an empty or blank authfile is no error."""
    path = tmp_path / "docker-config.json"
    path.write_text(content)
    assert strict_loader.docker_config(path) == {"auths": {}}


def test_docker_config_reads_only_the_first_json_value(strict_loader: StrictLoader, tmp_path: Path) -> None:
    """json.Decoder.Decode stops after one value, so trailing bytes are ignored exactly as docker/cli does."""
    path = tmp_path / "docker-config.json"
    path.write_text('{"auths": {"h": {"auth": "YWxpY2U6czNjcjN0"}}}\ngarbage')
    assert strict_loader.docker_config(path)["auths"]["h"]["password"] == "s3cr3t"


def test_missing_go_fails_with_an_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge is never skipped: without Go the run fails and says what to install."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AssertionError, match="apt-get install golang-go"):
        strictload.build(tmp_path)
