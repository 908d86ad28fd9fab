"""The seguard command: check, registry, policy validate, certs generate and serve."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ALL_CODES = {
    "InvalidHost",
    "HostNotAllowed",
    "HostDenied",
    "WildcardNotAllowed",
    "WildcardTooBroad",
    "ReservedClusterDomain",
    "ConflictKubernetesService",
    "ShadowsKubernetesService",
    "ConflictServiceEntry",
    "DuplicateHost",
    "WildcardOverlap",
    "PartialWildcard",
    "TargetDenied",
    "TargetTooBroad",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def seguard(
    *argv: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed command, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


# --- check ---------------------------------------------------------------------------------


def test_check_of_the_examples_shows_every_reason_code_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(
        capsys,
        "check",
        str(EXAMPLES / "serviceentries"),
        "--registry-dir",
        str(EXAMPLES / "cluster"),
        "-o",
        "json",
    )
    results = json.loads(out)
    assert status == 1
    seen = {code for r in results for code in r["reasons"]}
    assert seen == ALL_CODES
    for result in results:
        assert set(result) == {
            "namespace", "name", "allowed", "warnings", "reasons", "messages", "patch"
        }  # fmt: skip
        # Each reason comes with the message that says why and the way out, for CI to show.
        for code in result["reasons"]:
            assert any(m.endswith(f"[{code}]") for m in result["messages"])


def test_a_clean_service_entry_alone_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "check",
        str(EXAMPLES / "serviceentries" / "01-clean.yaml"),
        "--registry-dir",
        str(EXAMPLES / "cluster"),
        "-o",
        "json",
    )
    [result] = json.loads(out)
    assert status == 0
    assert result["allowed"] is True and result["reasons"] == []
    assert {op["path"] for op in result["patch"]} == {
        "/metadata/annotations",
        "/spec/location",
        "/spec/resolution",
    }


def test_check_table_names_the_owner_and_the_way_out(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "check",
        str(EXAMPLES / "serviceentries" / "10-conflict-service-entry.yaml"),
        "--registry-dir",
        str(EXAMPLES / "cluster"),
    )
    assert status == 1
    header = out.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "OPERATION", "RESULT", "REASONS", "DEFAULTS"]
    assert "team-a/stripe" in out and 'exportTo: ["."]' in out


def test_a_manifest_already_in_the_registry_is_judged_as_an_update(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "stripe", "namespace": "team-a"},
        "spec": {
            "hosts": ["api.stripe.com"],
            "ports": [{"name": "tls", "number": 443, "protocol": "TLS"}],
        },
    }
    write(cluster / "se.yaml", [entry])
    changed = json.loads(json.dumps(entry))
    changed["spec"]["ports"][0]["number"] = 8443
    manifest = write(tmp_path / "change.yaml", [changed])
    status, out, _ = run(capsys, "check", str(manifest), "--registry-dir", str(cluster))
    assert status == 0
    assert out.splitlines()[1].split()[:4] == ["team-a", "stripe", "UPDATE", "allowed"]


def two_claims_of_one_host() -> list[dict[str, Any]]:
    """Two ServiceEntries of two namespaces, one host: the second is a ConflictServiceEntry."""
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "one", "namespace": ns},
            "spec": {"hosts": ["shared.example.com"]},
        }
        for ns in ("team-x", "team-y")
    ]


def test_two_manifests_in_one_change_that_claim_one_host_are_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = two_claims_of_one_host()
    status, out, _ = run(capsys, "check", str(write(tmp_path / "two.yaml", docs)), "-o", "json")
    first, second = json.loads(out)
    assert status == 1
    assert first["allowed"] is True
    assert second["reasons"] == ["ConflictServiceEntry"]
    assert "team-x/one" in second["messages"][0]


def test_check_reads_manifests_from_standard_input(tmp_path: Path) -> None:
    docs = two_claims_of_one_host()
    result = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "check", "-", "-o", "json"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert [r["allowed"] for r in json.loads(result.stdout)] == [True, False]


def test_a_yaml_error_reads_the_same_in_check_and_policy_validate(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec:\n  hosts: [a.example.com\n")
    check = seguard("check", str(bad))
    validate = seguard("policy", "validate", str(bad))
    assert check.returncode == validate.returncode == 2
    assert check.stderr == validate.stderr
    assert check.stderr.startswith(f"seguard: error: {bad}: not valid YAML at line 3, column 1: ")


def test_a_manifest_without_a_namespace_is_in_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": "n"},
        "spec": {"hosts": ["n.example.com"]},
    }
    status, out, _ = run(capsys, "check", str(write(tmp_path / "n.yaml", [doc])), "-o", "json")
    assert status == 0
    assert json.loads(out)[0]["namespace"] == "default"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param("kind: [unclosed", "line", id="yaml-that-does-not-parse"),
        pytest.param("- just\n- a list\n", "not an object", id="a-document-that-is-not-an-object"),
        pytest.param(b"\xff\xfe\xfa", "UTF-8", id="bytes-that-are-not-text"),
    ],
)
def test_an_unreadable_manifest_is_one_clear_line_and_exit_2(
    tmp_path: Path, content: str | bytes, fragment: str
) -> None:
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = seguard("check", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("seguard: error: ")
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    result = seguard("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr == f"seguard: error: {tmp_path / 'nope.yaml'}: no such file or folder\n"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("", id="an-empty-file"),
        pytest.param("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", id="no-service-entry-among-the-objects"),
    ],
)  # fmt: skip
def test_nothing_to_check_is_bad_input_not_a_pass(tmp_path: Path, content: str) -> None:
    path = tmp_path / "manifests.yaml"
    path.write_text(content)
    result = seguard("check", str(path))
    assert result.returncode == 2
    assert result.stderr == f"seguard: error: no ServiceEntry found in {path}; nothing to check\n"


def test_an_empty_folder_is_bad_input(tmp_path: Path) -> None:
    result = seguard("check", str(tmp_path))
    assert result.returncode == 2
    assert "no ServiceEntry found" in result.stderr


def test_usage_errors_exit_2_with_one_line() -> None:
    result = seguard("check")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "FILE" in result.stderr


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        pytest.param(["serve", "--port", "99999"], ["--port", "65535"], id="a-port-out-of-range"),
        pytest.param(["serve", "--metrics-port", "http"], ["--metrics-port", "port number"], id="a-port-that-is-no-number"),
        pytest.param(["serve", "--drain-seconds", "-3"], ["--drain-seconds", "0 seconds or more"], id="negative-seconds"),
        pytest.param(["serve", "--drain-seconds", "nan"], ["--drain-seconds"], id="seconds-that-are-no-number"),
        pytest.param(["serve", "--istiod-url", "not-a-url"], ["--istiod-url", "http://"], id="an-istiod-url-that-is-no-url"),
        pytest.param(["scan", "--istiod-url", "ftp://istiod"], ["--istiod-url"], id="an-istiod-url-of-another-scheme"),
        pytest.param(["registry", "--istiod-url", "http://istiod:port"], ["--istiod-url", "not a URL"], id="an-istiod-url-with-a-bad-port"),
        pytest.param(["certs", "generate", "--service", "Bad_Name"], ["--service", "Kubernetes name"], id="a-service-name-kubernetes-refuses"),
        pytest.param(["certs", "generate", "--namespace", "-ns"], ["--namespace"], id="a-namespace-kubernetes-refuses"),
        pytest.param(["certs", "generate", "--days", "0"], ["--days", "at least 1"], id="zero-days"),
        pytest.param(["certs", "generate", "--ip", "1.2.3"], ["--ip", "not an IP address"], id="an-ip-that-is-none"),
        pytest.param(["certs", "generate", "--dns", "bad_name.example"], ["--dns"], id="a-dns-name-that-is-none"),
        pytest.param(["audit", "--file", "-", "--code", "NotACode"], ["--code", "ConflictServiceEntry"], id="an-unknown-reason-code"),
        pytest.param(["audit", "--file", "-", "--code", "duplicatehost"], ["did you mean DuplicateHost?"], id="a-reason-code-in-the-wrong-case"),
        pytest.param(["audit", "--file", "-", "--event", "admission"], ["--event", "admission.decision"], id="an-unknown-event"),
    ],
)  # fmt: skip
def test_bad_flag_values_are_refused_at_parse_time_in_one_line(
    argv: list[str], words: list[str], tmp_path: Path
) -> None:
    result = seguard(*argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("seguard: error: argument ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was done


@pytest.mark.parametrize(
    ("argv", "outlived"),
    [
        pytest.param(["--ca-days", "30", "--days", "60"], True, id="longer-than-a-new-ca"),
        pytest.param(["--ca-days", "30", "--days", "30"], False, id="as-long-as-a-new-ca"),
    ],
)
def test_a_certificate_may_not_outlive_its_ca(
    argv: list[str], outlived: bool, tmp_path: Path
) -> None:
    result = seguard("certs", "generate", "--out", str(tmp_path / "certs"), *argv)
    assert (result.returncode == 2) is outlived, result.stderr
    assert ("would outlive its CA" in result.stderr) is outlived


# --- registry --------------------------------------------------------------------------------


def test_registry_prints_one_hostname_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "registry", "--registry-dir", str(EXAMPLES / "cluster"))
    assert status == 0
    lines = out.splitlines()
    assert "reviews.bookinfo.svc.cluster.local" in lines
    assert "api.stripe.com" in lines
    assert lines == sorted(lines)
    # Four Services and five ServiceEntry hosts: api.stripe.com twice (team-a's, and the younger
    # duplicate in team-c), as istiod's registryz lists it.
    assert len(lines) == 4 + 5
    assert lines.count("api.stripe.com") == 2


def test_registry_table_and_json_show_owner_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "registry", "--registry-dir", str(EXAMPLES / "cluster"), "-o", "json")
    rows = {r["hostname"]: r for r in json.loads(out)}
    assert rows["api.github.com"] == {
        "hostname": "api.github.com",
        "kind": "ServiceEntry",
        "namespace": "team-a",
        "name": "github",
        "exportTo": ".",
        "source": "files",
    }
    _, out, _ = run(capsys, "registry", "--registry-dir", str(EXAMPLES / "cluster"), "-o", "table")
    assert out.splitlines()[0].split() == [
        "HOSTNAME",
        "KIND",
        "NAMESPACE",
        "NAME",
        "EXPORTTO",
        "SOURCE",
    ]


# --- policy validate -------------------------------------------------------------------------


def test_policy_validate_reads_the_shipped_config_map_and_standard_input() -> None:
    shipped = ROOT / "deploy" / "base" / "policy.yaml"
    from_file = seguard("policy", "validate", str(shipped))
    assert from_file.returncode == 0, from_file.stderr
    assert "valid ServiceEntryPolicy (mode Audit" in from_file.stdout
    piped = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "policy", "validate", "-"],
        input=shipped.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("standard input: valid ServiceEntryPolicy (mode Audit")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param({"other.yaml": "x"}, "no data.policy.yaml", id="no-policy-key"),
        pytest.param(
            {"policy.yaml": "apiVersion: seguard.io/v1alpha1\nkind: ServiceEntryPolicy\nspec: {mode: Sometimes}\n"},
            "(data.policy.yaml): spec.mode",
            id="a-bad-policy-inside",
        ),
    ],
)  # fmt: skip
def test_a_config_map_without_a_good_policy_is_refused_with_the_reason(
    data: dict[str, str], words: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "cm.yaml",
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": data}],
    )
    result = seguard("policy", "validate", str(path))
    assert result.returncode == 2
    assert words in result.stderr and result.stderr.count("\n") == 1


def test_policy_validate_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "policy", "validate", str(EXAMPLES / "cluster" / "policy.yaml"))
    assert status == 0
    assert "valid ServiceEntryPolicy" in out and "2 namespace rules" in out


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        pytest.param({"mode": "Enforce", "hostz": {}}, "spec.hostz", id="unknown-field"),
        pytest.param(
            {"hosts": {"allowed": ["*.*.example.com"]}}, "spec.hosts.allowed[0]", id="bad-pattern"
        ),
        pytest.param({"mode": "Strict"}, "spec.mode", id="bad-mode"),
    ],
)
def test_policy_validate_names_the_bad_field_in_one_line(
    tmp_path: Path, spec: dict[str, Any], path: str
) -> None:
    file = write(
        tmp_path / "p.yaml",
        [{"apiVersion": "seguard.io/v1alpha1", "kind": "ServiceEntryPolicy", "spec": spec}],
    )
    result = seguard("policy", "validate", str(file))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert path in result.stderr


# --- certs generate ------------------------------------------------------------------------


def test_certs_generate_makes_an_ecdsa_pair_with_the_service_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, _ = run(
        capsys,
        "certs",
        "generate",
        "--out",
        str(tmp_path),
        "--service",
        "guard",
        "--namespace",
        "mesh-admin",
        "--days",
        "30",
    )
    assert status == 0
    leaf = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    names = leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert names == [
        "guard",
        "guard.mesh-admin",
        "guard.mesh-admin.svc",
        "guard.mesh-admin.svc.cluster.local",
    ]
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    leaf.verify_directly_issued_by(ca)
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days in (29, 30)
    assert oct((tmp_path / "tls.key").stat().st_mode & 0o777) == "0o600"


# --- serve ------------------------------------------------------------------------------------


def _started_line(line: str, log_format: str) -> str:
    """The curl command in one line of serve's standard error, or ""."""
    if log_format == "json":
        entry = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "event", "logger", "message"} <= entry.keys(), entry
        return str(entry["try_it"]) if entry["event"] == "server.started" else ""
    return line.strip() if line.strip().startswith("curl ") else ""


@pytest.mark.parametrize(
    ("flags", "serve_flags", "log_format"),
    [
        ([], [], "json"),
        (["--log-format", "text"], [], "text"),
        ([], ["--log-format", "text"], "text"),
        (["--log-format", "text"], ["--log-format", "json"], "json"),
    ],
)
def test_serve_with_no_flags_prints_a_curl_command_that_works(
    tmp_path: Path, flags: list[str], serve_flags: list[str], log_format: str
) -> None:
    """In an empty folder with no kubeconfig: dev certificates, built-in policy, empty registry.
    Standard error is a pipe here, so serve writes JSON lines unless told otherwise."""
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    argv = [sys.executable, "-m", "webhook.cli", *flags, "serve", *serve_flags, "--port", "0"]
    proc = subprocess.Popen(
        [*argv, "--metrics-port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        curl = ""
        while not curl:
            line = proc.stderr.readline()
            if not line:
                break
            curl = _started_line(line, log_format)
        assert curl, "serve printed no curl command"
        assert (tmp_path / "certs" / "tls.crt").exists()
        result = subprocess.run(
            shlex.split(curl), cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == "00000000-0000-0000-0000-000000000001"
        assert answer["response"]["allowed"] is False
        # The first signal starts the drain (5 s by default), a second one stops at once.
        proc.send_signal(signal.SIGTERM)
        while "draining for 5.0 s" not in (line := proc.stderr.readline()):
            assert line, "serve stopped without draining"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    record = json.loads(out.splitlines()[0])
    assert record["event"] == "admission.decision" and record["decision"] == "denied"
    if log_format == "json":
        events = [json.loads(line)["event"] for line in err.splitlines()]
        assert "server.signal" in events, err


def test_serve_with_a_bad_policy_fails_fast_in_one_line(tmp_path: Path) -> None:
    policy = write(
        tmp_path / "p.yaml",
        [
            {
                "apiVersion": "seguard.io/v1alpha1",
                "kind": "ServiceEntryPolicy",
                "spec": {"mode": "Sometimes"},
            }
        ],
    )
    result = seguard(
        "serve", "--policy", str(policy), "--port", "0", "--metrics-port", "0", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("seguard: error:")
    assert "spec.mode" in result.stderr and "Traceback" not in result.stderr


def test_serve_with_a_missing_cert_dir_says_what_to_do(tmp_path: Path) -> None:
    result = seguard(
        "serve", "--cert-dir", str(tmp_path / "nowhere"), "--port", "0", "--metrics-port", "0"
    )
    assert result.returncode == 2
    assert "seguard certs generate" in result.stderr and "Traceback" not in result.stderr


def test_registry_rows_show_a_namespaces_own_default_export_to() -> None:
    from tests.factories import make_policy, make_service_entry, make_snapshot
    from webhook.cli import registry_rows

    policy = make_policy(
        namespaces=[{"selector": {"names": ["team-p"]}, "meshDefaultExportTo": ["."]}]
    )
    snapshot = make_snapshot(
        make_service_entry("a", "team-p", ["a.example.com"]),
        make_service_entry("b", "team-q", ["b.example.com"]),
        make_service_entry("c", "team-p", ["c.example.com"], export_to=["team-q"]),
    )
    shown = {row["hostname"]: row["exportTo"] for row in registry_rows(snapshot, policy)}
    assert shown == {"a.example.com": ".", "b.example.com": "*", "c.example.com": "team-q"}


def test_serve_managing_webhooks_without_a_cluster_fails_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    (tmp_path / "registry").mkdir()
    result = subprocess.run(
        [
            sys.executable, "-m", "webhook.cli", "serve", "--port", "0", "--metrics-port", "0",
            "--registry-dir", str(tmp_path / "registry"), "--manage-webhooks", "seguard",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "seguard: error: --manage-webhooks needs a cluster (--kubeconfig, or run in a pod)"
    )
    assert "Traceback" not in result.stderr


def test_a_long_check_shows_its_progress_on_a_terminal_and_only_there(tmp_path: Path) -> None:
    import pty

    docs = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": f"e{i}", "namespace": f"team-{i % 7}"},
            "spec": {"hosts": [f"api{i}.example.com"]},
        }
        for i in range(6000)
    ]
    path = write(tmp_path / "many.yaml", docs)
    argv = [sys.executable, "-m", "webhook.cli", "check", str(path), "-o", "json"]
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=follower, timeout=120, check=False
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is closed once the command is done
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert len(json.loads(proc.stdout)) == 6000  # standard output is the answer alone
    assert b"seguard: checked 6,000 of 6,000 ServiceEntries" in seen
    piped = seguard("check", str(path), "-o", "json", timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""
