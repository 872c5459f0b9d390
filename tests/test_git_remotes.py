"""Where a clone or a push may go (orchestrator/git/remotes.py), and how git is run
(orchestrator/git/commands.py): the rules, without the web app."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InvalidRequest
from orchestrator.git import clone, commands, push, remotes
from tests.fakes.git_server import GitServer

ALLOWED = ("github.com", "gitlab.com", "http://127.0.0.1:8417")


def table(**names: list[str]) -> remotes.Resolver:
    """A resolver answering from a table, as DNS would for these names."""
    return lambda host, _port: names[host.replace(".", "_")]


def test_an_allowed_host_that_resolves_publicly_is_pinned_to_the_checked_address() -> None:
    found = remotes.check(
        "https://github.com/acme/app.git", ALLOWED, table(github_com=["140.82.112.3"])
    )
    assert (found.scheme, found.host, found.port, found.address) == (
        "https",
        "github.com",
        443,
        "140.82.112.3",
    )
    assert found.pin == "github.com:443:140.82.112.3"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:10.0.0.1",
        "224.0.0.1",
    ],
)
def test_an_allowed_name_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidRequest, match="non-public address"):
        remotes.check("https://github.com/a/b.git", ALLOWED, table(github_com=[address]))


def test_one_non_public_address_among_public_ones_is_enough_to_refuse() -> None:
    resolver = table(github_com=["140.82.112.3", "10.0.0.7"])
    with pytest.raises(InvalidRequest, match="non-public"):
        remotes.check("https://github.com/a/b.git", ALLOWED, resolver)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/passwd", "Only https://"),
        ("ssh://git@github.com/a/b.git", "Only https://"),
        ("git://github.com/a/b.git", "Only https://"),
        ("git@github.com:a/b.git", "https://"),
        ("http://github.com/a/b.git", "Only https://"),
        ("https://user:pass@github.com/a/b.git", "must not carry credentials"),
        ("https://ghp_secret@github.com/a/b.git", "must not carry credentials"),
        ("https://example.com/a/b.git", "example.com is not allowed"),
        ("https://github.com.evil.test/a.git", "not allowed"),
        ("https://127.0.0.1/a.git", "not allowed"),
        ("https://[::1]/a.git", "not allowed"),
        ("https://169.254.169.254/latest/meta-data", "not allowed"),
        ("http://127.0.0.1:8418/a.git", "Only https://"),
        ("https://127.0.0.1:8417/a.git", "not allowed"),
        ("https://github.com/a b.git", "spaces"),
        ("ext::sh -c touch% /tmp/pwned", "spaces"),
        ("https://github.com:99999/a.git", "not a valid URL"),
        ("https://github.com:8443/a.git", "on the https port (443) only"),
    ],
)
def test_refused_urls_say_why(url: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        remotes.check(url, ALLOWED, table(github_com=["140.82.112.3"]))
    assert words in refused.value.message


def test_an_origin_entry_allows_exactly_that_origin_private_address_included() -> None:
    resolver = table(**{"127_0_0_1": ["127.0.0.1"]})
    found = remotes.check("http://127.0.0.1:8417/a.git", ALLOWED, resolver)
    assert (found.scheme, found.port, found.address) == ("http", 8417, "127.0.0.1")


def test_an_entry_that_is_not_an_origin_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        remotes.parse_allowed(["ssh://git.example.com"])


def test_refs_and_branches_never_read_as_options_or_paths() -> None:
    for bad in ("--upload-pack=touch /tmp/x", "-x", "a..b", "a b", "x\n"):
        with pytest.raises(InvalidRequest):
            clone.check_ref(bad)
        with pytest.raises(InvalidRequest):
            push.check_branch(bad)
    assert clone.check_ref("v1.2.3") == "v1.2.3"
    assert push.check_branch("feature/x") == "feature/x"
    for bad in ("a.lock", ".hidden", "a//b", "a/"):
        with pytest.raises(InvalidRequest):
            push.check_branch(bad)


def test_the_token_is_only_in_the_environment_and_never_in_what_git_says(
    git_server: GitServer, tmp_path: Path
) -> None:
    git_server.private["guarded"] = "tok-9f8e7d"
    git_server.repository("guarded", {"a.txt": b"a\n"})
    remote = remotes.check(git_server.url("guarded"), (git_server.origin,))
    env = commands.environment(remote, "tok-9f8e7d", tmp_path)
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert "tok-9f8e7d" not in env["GIT_CONFIG_VALUE_0"]  # base64, in a header
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ALLOW_PROTOCOL"] == "http"
    with pytest.raises(commands.GitError) as failed:
        commands.run(
            ["ls-remote", remote.url + "-missing"],
            cwd=tmp_path,
            home=tmp_path,
            remote=remote,
            token="tok-9f8e7d",
        )
    assert "tok-9f8e7d" not in failed.value.reason
    assert commands.scrub("x tok-9f8e7d y", "tok-9f8e7d") == "x *** y"
    listed = commands.run(
        ["ls-remote", remote.url], cwd=tmp_path, home=tmp_path, remote=remote, token="tok-9f8e7d"
    )
    assert "refs/heads/main" in listed
    assert not any("tok-9f8e7d" in line for line in git_server.requests)


def test_the_clone_connects_to_the_checked_address_whatever_the_name_resolves_to_later(
    git_server: GitServer, tmp_path: Path
) -> None:
    """The pinned address wins over DNS: a name that now resolves elsewhere (here: to nothing
    at all) still reaches the address that was checked."""
    git_server.repository("pinned", {"a.txt": b"a\n"})
    url = git_server.url("pinned").replace("127.0.0.1", "rebound.invalid")
    origin = git_server.origin.replace("127.0.0.1", "rebound.invalid")
    remote = remotes.check(url, (origin,), table(rebound_invalid=["127.0.0.1"]))
    listed = commands.run(["ls-remote", remote.url], cwd=tmp_path, home=tmp_path, remote=remote)
    assert "refs/heads/main" in listed


def test_the_settings_read_the_import_limits_and_refuse_a_bad_origin() -> None:
    from orchestrator.errors import ConfigError
    from orchestrator.settings import Settings

    default = Settings.from_env({"AUTH_SECRET": "x"})
    assert default.import_allowed_hosts == ("github.com", "gitlab.com", "bitbucket.org")
    assert (default.import_timeout, default.import_max_mb) == (120.0, 256)
    chosen = Settings.from_env(
        {
            "IMPORT_ALLOWED_HOSTS": "git.example.com, http://10.0.0.5:8417",
            "IMPORT_TIMEOUT": "30",
            "IMPORT_MAX_MB": "64",
        }
    )
    assert chosen.import_allowed_hosts == ("git.example.com", "http://10.0.0.5:8417")
    assert (chosen.import_timeout, chosen.import_max_mb) == (30.0, 64)
    with pytest.raises(ConfigError, match="IMPORT_ALLOWED_HOSTS"):
        Settings.from_env({"IMPORT_ALLOWED_HOSTS": "ssh://git.example.com"})
