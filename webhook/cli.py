"""The ``seguard`` command (shell).

Every command prints a failure as one line on standard error (``seguard: error: ...``) and
exits non-zero; none prints a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from webhook import __version__, kube, logs
from webhook.core.outcomes import ALLOWED, DENIED, RESULTS
from webhook.core.policy import Policy
from webhook.core.policyfile import PolicyError, default_policy, parse_policy_text
from webhook.core.registry import RegistryBuilder

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

log = logging.getLogger("seguard")


class CommandError(Exception):
    """A failure to report as one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class _Help(argparse.HelpFormatter):
    """Every option's default in its help, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: {default})"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{message} (see `{self.prog} --help`)")


# --- shared helpers ----------------------------------------------------------------------------


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return default_policy()
    try:
        text = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read policy {path}: {exc.strerror}") from None
    return parse_policy_text(text, source="standard input" if str(path) == "-" else str(path))


def load_registry(
    policy_file: Path | None,
    dirs: Sequence[Path],
    *,
    kubeconfig: Path | None = None,
    istiod_url: str | None = None,
    discover: bool = False,
) -> tuple[Policy, RegistryBuilder]:
    """The policy (``--policy``, else one kept in the registry folders, else the built-in) and
    the registry: the folders' manifests, plus one full read of the cluster (``--kubeconfig``)
    and of istiod's registryz (``--istiod-url``) when given. With ``discover``, a cluster is
    found as ``serve`` finds it when no folder is given, and finding none is an error: a scan
    pointed nowhere must not pass."""
    from webhook.sources import files

    located = files.read_located(dirs) if dirs else []
    policy = (
        load_policy(policy_file) if policy_file else files.policy_in(located) or default_policy()
    )
    objects: list[tuple[str, Any]] = [(files.SOURCE, obj) for _, obj in located]
    if discover:
        read, found = kube.cluster_to_read(kubeconfig, other_sources=bool(dirs))
        if not (read or dirs or istiod_url):
            raise CommandError(
                "nothing to read: give --kubeconfig or --registry-dir (no $KUBECONFIG, no "
                "~/.kube/config, and not in a pod)"
            )
    else:
        read = kubeconfig is not None
        found = kube.find_kubeconfig(kubeconfig) if read else None
    if read:
        from webhook.sources import kubernetes

        cluster_objects, notes = kubernetes.read_cluster(kube.connect(found))
        for note in notes:
            print(f"seguard: {note}", file=sys.stderr)
        objects += [(kubernetes.SOURCE, obj) for obj in cluster_objects]
    builder = RegistryBuilder.bulk(objects, cluster_domain=policy.cluster_domain)
    if istiod_url:
        from webhook.sources import istiod

        claims = istiod.claims_from_registryz(istiod.fetch(istiod_url))
        builder = builder.replace_claims(istiod.SOURCE, claims)
    return policy, builder


def _print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = _widths(rows, headers)
    for row in [headers, *rows]:
        _print_row(row, widths)


def _widths(rows: list[list[str]], headers: list[str]) -> list[int]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return widths


def _print_row(row: list[str], widths: list[int]) -> None:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _emit_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


# --- seguard check -------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from webhook.core.check import check_objects
    from webhook.sources import files

    policy, builder = load_registry(args.policy, args.registry_dir, kubeconfig=args.kubeconfig)
    objects = files.read_objects(args.files)
    results = check_objects(
        objects, policy=policy, builder=builder, progress=_progress_line(objects)
    )
    if not results:
        # Bad input, not a pass: a wrong path or an empty rendering must not turn CI green.
        shown = ", ".join(str(f) for f in args.files)
        return _fail(f"no ServiceEntry found in {shown}; nothing to check", EXIT_USAGE)
    if args.output == "json":
        _emit_json([r.as_dict() for r in results])
    else:
        rows = [
            [
                r.namespace,
                r.name,
                r.operation,
                ALLOWED if r.allowed else DENIED,
                ",".join(r.reasons) or "-",
                _defaults_column(r.patch),
            ]
            for r in results
        ]
        _print_table(rows, ["NAMESPACE", "NAME", "OPERATION", "RESULT", "REASONS", "DEFAULTS"])
        messages = [f"{r.namespace}/{r.name}: {m}" for r in results for m in r.messages]
        if messages:
            print()
            print("\n".join(messages))
    return EXIT_OK if all(r.allowed for r in results) else EXIT_DENIED


def _progress_line(objects: list[dict[str, Any]]) -> Callable[[int], None] | None:
    """For someone at a terminal, a line on standard error that counts the manifests judged:
    rewritten every thousand (a fraction of a second each), and closed when all are done."""
    if not sys.stderr.isatty():
        return None
    from webhook.core.claims import SERVICE_ENTRY, kind_of

    total = sum(1 for obj in objects if kind_of(obj) == SERVICE_ENTRY)
    if total < _PROGRESS_EVERY:
        return None

    def progress(done: int) -> None:
        if done % _PROGRESS_EVERY == 0 or done == total:
            end = "\n" if done == total else ""
            line = f"\rseguard: checked {done:,} of {total:,} ServiceEntries"
            print(line, end=end, file=sys.stderr, flush=True)

    return progress


_PROGRESS_EVERY = 1000


def _defaults_column(patch: list[dict[str, Any]]) -> str:
    shown = [
        f"{op['path'].removeprefix('/spec/')}={_short_value(op['value'])}"
        for op in patch
        if op.get("path", "").startswith("/spec/")
    ]
    return " ".join(shown) or "-"


def _short_value(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


# --- seguard registry ------------------------------------------------------------------------


def registry_rows(snapshot: Any, policy: Policy) -> list[dict[str, str]]:
    from webhook.core.context import effective_export_to

    rows: list[dict[str, str]] = []
    for claim in snapshot.claims.values():
        export_to = ",".join(effective_export_to(claim, policy, snapshot))
        for host in claim.hosts:
            rows.append(
                {
                    "hostname": host,
                    "kind": claim.kind,
                    "namespace": claim.namespace,
                    "name": claim.name,
                    "exportTo": export_to,
                    "source": claim.source,
                }
            )
    rows.sort(key=lambda r: (r["hostname"], r["namespace"], r["kind"], r["name"]))
    return rows


def cmd_registry(args: argparse.Namespace) -> int:
    policy, builder = load_registry(
        args.policy,
        args.registry_dir,
        kubeconfig=args.kubeconfig,
        istiod_url=args.istiod_url,
        discover=True,
    )
    snapshot = builder.snapshot()
    rows = registry_rows(snapshot, policy)
    if args.output == "json":
        _emit_json(rows)
    elif args.output == "table":
        keys = ["hostname", "kind", "namespace", "name", "exportTo", "source"]
        _print_table([[r[k] for k in keys] for r in rows], [k.upper() for k in keys])
    else:
        # One line per host and namespace, as `jq -r '.[].hostname'` prints istiod's registryz
        # (ServiceEntries of one namespace that share a host are one service there).
        seen: set[tuple[str, str]] = set()
        for r in rows:
            if (r["hostname"], r["namespace"]) not in seen:
                seen.add((r["hostname"], r["namespace"]))
                print(r["hostname"])
    for skipped in snapshot.skipped:
        print(
            f"seguard: skipped {skipped.kind} {skipped.namespace}/{skipped.name}: {skipped.reason}",
            file=sys.stderr,
        )
    return EXIT_OK


# --- seguard scan --------------------------------------------------------------------------


def cmd_scan(args: argparse.Namespace) -> int:
    from webhook.core.scan import denying, scan

    policy, builder = load_registry(
        args.policy,
        args.registry_dir,
        kubeconfig=args.kubeconfig,
        istiod_url=args.istiod_url,
        discover=True,
    )
    violations = scan(builder.snapshot(), policy)
    if args.output == "json":
        _emit_json([v.as_dict() for v in violations])
    else:
        rows = [
            [
                v.namespace,
                v.name,
                v.created or "-",
                v.finding.code.value,
                v.finding.host or "-",
                f"{v.finding.owner.kind}/{v.finding.owner.namespace}/{v.finding.owner.name}"
                if v.finding.owner
                else "-",
                v.finding.action.value + (" (exempt)" if v.exempt else ""),
            ]
            for v in violations
        ]
        _print_table(
            rows, ["NAMESPACE", "NAME", "CREATED", "CODE", "HOST", "OLDER OWNER", "ACTION"]
        )
        if violations:
            print()
            for v in violations:
                print(f"{v.namespace}/{v.name}: {v.finding.message}")
    return EXIT_DENIED if denying(violations) else EXIT_OK


# --- seguard audit ---------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from webhook.audit import Query, parse_since, read_records, trail_lines

    source = args.file
    if source is None:
        if sys.stdin.isatty():
            raise CommandError(
                "give --file FILE, or pipe the records in (for example from kubectl logs)"
            )
        source = "-"
    now = datetime.datetime.now(datetime.UTC)
    query = Query(
        since=parse_since(args.since, now) if args.since else None,
        namespace=args.namespace,
        user=args.user,
        decision=args.decision,
        event=args.event,
        code=args.code,
    )
    lines = sys.stdin.buffer if source == "-" else trail_lines(source)
    found = (r for r in read_records(lines) if query.matches(r))
    if args.output == "json":
        for r in found:
            sys.stdout.write(orjson.dumps(r).decode() + "\n")
        return EXIT_OK
    headers = ["TIME", "DECISION", "USER", "OBJECT", "HOSTS", "CODES", "OWNERS", "DRY-RUN"]
    _stream_table((_audit_row(r) for r in found), headers)
    return EXIT_OK


def _audit_row(r: dict[str, Any]) -> list[str]:
    findings = [f for f in r.get("findings") or [] if isinstance(f, dict)]
    codes = ",".join(dict.fromkeys(str(f.get("code")) for f in findings)) or str(
        r.get("code") or "-"
    )
    owners = ",".join(
        dict.fromkeys(
            f"{f['owner']['namespace']}/{f['owner']['name']}"
            for f in findings
            if isinstance(f.get("owner"), dict)
        )
    )
    return [
        str(r.get("time", "")),
        str(r.get("decision") or r.get("event", "")),
        str(r.get("user") or "-"),
        f"{r.get('namespace', '')}/{r.get('name', '')}",
        ",".join(r.get("hosts") or []) or str(r.get("host") or "-"),
        codes,
        owners or "-",
        "yes" if r.get("dryRun") else "",
    ]


# How many rows set a streamed table's column widths: the rest are printed as they come, in
# memory that does not grow with the input (a longer cell only pushes its line out).
_TABLE_WIDTH_ROWS = 1000


def _stream_table(rows: Iterator[list[str]], headers: list[str]) -> None:
    first = list(itertools.islice(rows, _TABLE_WIDTH_ROWS))
    widths = _widths(first, headers)
    for row in itertools.chain([headers], first, rows):
        _print_row(row, widths)


# --- seguard policy validate ------------------------------------------------------------------


def cmd_policy_validate(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)
    rules = len(policy.namespace_rules)
    shown = "standard input" if str(args.file) == "-" else args.file
    print(
        f"{shown}: valid ServiceEntryPolicy (mode {policy.rules.mode}, cluster domain "
        f"{policy.cluster_domain}, {rules} namespace rule{'s' if rules != 1 else ''}, "
        f"sha256 {policy.digest[:12]})"
    )
    return EXIT_OK


def cmd_policy_schema(_args: argparse.Namespace) -> int:
    import yaml

    from webhook.core.policyschema import crd

    header = (
        "# The ServiceEntryPolicy CRD, made by `seguard policy schema` from the policy's model.\n"
    )
    sys.stdout.write(header + yaml.safe_dump(crd(), sort_keys=False, width=100))
    return EXIT_OK


# --- seguard certs generate -------------------------------------------------------------------


def cmd_certs_generate(args: argparse.Namespace) -> int:
    from webhook import certs

    written = certs.generate(
        args.out,
        service=args.service,
        namespace=args.namespace,
        cluster_domain=args.cluster_domain,
        days=args.days,
        ca_days=args.ca_days,
        extra_dns=args.dns,
        ip_addresses=args.ip,
        ca_from=args.ca_from,
        bundle_patch=args.ca_bundle_patch,
    )
    for path in written:
        print(path)
    return EXIT_OK


# --- seguard serve ---------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from webhook import serve

    policy, builder = load_registry(args.policy, args.registry_dir)
    options = serve.Options(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        cert_dir=args.cert_dir,
        client_ca=args.client_ca,
        policy_file=args.policy,
        follow_files=bool(args.registry_dir),
        kubeconfig=args.kubeconfig,
        istiod_url=args.istiod_url,
        audit_file=args.audit_file,
        audit_stdout=not args.no_audit_stdout,
        manage_webhooks=args.manage_webhooks,
        rollout_probe_namespace=args.rollout_probe_namespace,
        lease_namespace=args.lease_namespace,
        drain_seconds=args.drain_seconds,
        max_connections=args.max_connections,
        log_format=args.log_format,
    )
    serve.run(options, policy=policy, builder=builder)
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------------


def _path(value: str) -> Path:
    return Path(value)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {number}")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port from 1 to 65535 (0: any free port), got {number}"
        )
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 seconds or more, got {value}")
    return number


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL such as http://istiod.istio-system:15014, "
            f"got {value!r}"
        )
    return value


def _dns_label(value: str) -> str:
    """A Service or namespace name: an RFC 1123 label, as Kubernetes requires."""
    from webhook.core.hosts import DNS_LABEL, MAX_LABEL

    if len(value) > MAX_LABEL or not DNS_LABEL.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid Kubernetes name: lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {MAX_LABEL} characters"
        )
    return value


def _dns_name(value: str) -> str:
    from webhook.core import hosts

    try:
        name = hosts.normalize(value)
    except hosts.InvalidHost as exc:
        raise argparse.ArgumentTypeError(f"{value!r} {exc.reason}") from None
    if hosts.is_wildcard(name) and not name.startswith("*."):
        raise argparse.ArgumentTypeError(f"{value!r} is not a DNS name for a certificate")
    return name


def _ip_address(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None


def _reason_code(value: str) -> str:
    from webhook.core.findings import Code

    codes = [code.value for code in Code]
    if value in codes:
        return value
    near = [code for code in codes if code.lower() == value.lower()]
    hint = f"did you mean {near[0]}?" if near else "one of " + ", ".join(codes)
    raise argparse.ArgumentTypeError(f"{value!r} is not a reason code; {hint}")


_POLICY_HELP = "ServiceEntryPolicy file (default: one kept in --registry-dir, else the built-in)"
_REGISTRY_DIR_HELP = (
    "manifests that make up the registry: Services, ServiceEntries, Namespaces (repeatable)"
)
_KUBECONFIG_HELP = (
    "read the registry from this cluster (default: $KUBECONFIG, ~/.kube/config, or the pod's "
    "service account)"
)


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one statement per flag
    from webhook.audit import EVENTS as AUDIT_EVENTS

    parser = _Parser(
        prog="seguard", description="ServiceEntry Guard: guards Istio's service registry."
    )
    parser.add_argument("--version", action="version", version=f"seguard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="how log lines on stderr read: one JSON object a line (the default of serve, "
        "unless stderr is a terminal) or plain text (the default of the other commands)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    serve = sub.add_parser("serve", help="run the webhook")
    serve.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=argparse.SUPPRESS,  # absent here: the top-level flag, or the default, stands
        help="as the top-level --log-format (default: json, or text on a terminal)",
    )
    serve.add_argument("--policy", type=_path, help="ServiceEntryPolicy file (default: built-in)")
    serve.add_argument(
        "--cert-dir",
        type=_path,
        default=None,
        help="folder with tls.crt and tls.key (default: certs/, made for development if empty)",
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument(
        "--port", type=_port, default=8443, help="HTTPS port for /validate and /mutate"
    )
    serve.add_argument(
        "--metrics-port", type=_port, default=8080, help="HTTP port for health and metrics"
    )
    serve.add_argument("--kubeconfig", type=_path, help="follow this cluster's registry")
    serve.add_argument(
        "--registry-dir",
        type=_path,
        action="append",
        default=[],
        help="manifests that make up the registry (repeatable)",
    )
    serve.add_argument(
        "--istiod-url",
        type=_http_url,
        help="also poll istiod's /debug/registryz, e.g. http://istiod.istio-system:15014",
    )
    serve.add_argument("--audit-file", type=_path, help="append audit records to this file too")
    serve.add_argument(
        "--client-ca", type=_path, help="require client certificates signed by this CA"
    )
    serve.add_argument(
        "--manage-webhooks",
        metavar="NAME",
        help="safe rollout: switch the named ValidatingWebhookConfiguration to failurePolicy "
        "Fail once a probe proves it works, and keep its CA bundle in place",
    )
    serve.add_argument(
        "--rollout-probe-namespace",
        default="default",
        help="namespace for the dry-run probe of --manage-webhooks (default: default)",
    )
    serve.add_argument(
        "--lease-namespace",
        help="namespace of the scan's Lease (default: the pod's own namespace)",
    )
    serve.add_argument(
        "--drain-seconds",
        type=_seconds,
        default=5.0,
        help="on SIGTERM, keep answering this long while unready (default 5)",
    )
    serve.add_argument(
        "--no-audit-stdout", action="store_true", help="do not write audit records to stdout"
    )
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,  # connections.MAX_CONNECTIONS, not imported here: it loads uvicorn
        help="open connections the webhook port holds; at the bound, idle ones are closed "
        "first (default 2048)",
    )
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="judge ServiceEntry manifests offline")
    check.add_argument(
        "files",
        type=_path,
        nargs="+",
        metavar="FILE",
        help="manifests to judge: files, folders (every .yaml, .yml, .json in them), or - for "
        "standard input",
    )
    check.add_argument("--policy", type=_path, help=_POLICY_HELP)
    check.add_argument(
        "--registry-dir", type=_path, action="append", default=[], help=_REGISTRY_DIR_HELP
    )
    check.add_argument("--kubeconfig", type=_path, help=_KUBECONFIG_HELP)
    check.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="output format"
    )
    check.set_defaults(func=cmd_check)

    registry = sub.add_parser("registry", help="print the registry's hostnames")
    registry.add_argument(
        "--registry-dir", type=_path, action="append", default=[], help=_REGISTRY_DIR_HELP
    )
    registry.add_argument("--kubeconfig", type=_path, help=_KUBECONFIG_HELP)
    registry.add_argument(
        "--istiod-url", type=_http_url, help="also read istiod's /debug/registryz"
    )
    registry.add_argument(
        "--policy", type=_path, help="for the cluster domain and mesh default exportTo"
    )
    registry.add_argument(
        "-o", "--output", choices=["name", "table", "json"], default="name", help="output format"
    )
    registry.set_defaults(func=cmd_registry)

    scan_parser = sub.add_parser("scan", help="judge every existing ServiceEntry, oldest first")
    scan_parser.add_argument("--kubeconfig", type=_path, help=_KUBECONFIG_HELP)
    scan_parser.add_argument(
        "--registry-dir", type=_path, action="append", default=[], help=_REGISTRY_DIR_HELP
    )
    scan_parser.add_argument(
        "--istiod-url", type=_http_url, help="also read istiod's /debug/registryz"
    )
    scan_parser.add_argument("--policy", type=_path, help=_POLICY_HELP)
    scan_parser.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="output format"
    )
    scan_parser.set_defaults(func=cmd_scan)

    audit = sub.add_parser("audit", help="read the audit trail back, with filters")
    audit.add_argument(
        "--file", help="the audit file (its rotated files are read too); - for stdin"
    )
    audit.add_argument("--since", help="only records newer than this: 30m, 1h, 2d, or a time")
    audit.add_argument("--namespace", help="only records of objects in this namespace")
    audit.add_argument("--user", help="only records of requests by this user")
    audit.add_argument(
        "--code", type=_reason_code, help="a reason code, such as ConflictServiceEntry"
    )
    audit.add_argument("--decision", choices=RESULTS, help="only records with this result")
    audit.add_argument("--event", choices=AUDIT_EVENTS, help="only records of this event")
    audit.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="output format (json: one record a line, as written)",
    )
    audit.set_defaults(func=cmd_audit)

    policy = sub.add_parser("policy", help="work with ServiceEntryPolicy documents")
    policy_sub = policy.add_subparsers(
        dest="policy_command", metavar="ACTION", parser_class=_Parser
    )
    policy_sub.required = True
    validate = policy_sub.add_parser("validate", help="check a policy file")
    validate.add_argument(
        "file",
        type=_path,
        metavar="FILE",
        help="a ServiceEntryPolicy document, or a ConfigMap holding one in data.policy.yaml; "
        "- for standard input",
    )
    validate.set_defaults(func=cmd_policy_validate)
    schema = policy_sub.add_parser(
        "schema", help="print the ServiceEntryPolicy CustomResourceDefinition (YAML)"
    )
    schema.set_defaults(func=cmd_policy_schema)

    certs_parser = sub.add_parser("certs", help="certificates for the webhook")
    certs_sub = certs_parser.add_subparsers(
        dest="certs_command", metavar="ACTION", parser_class=_Parser
    )
    certs_sub.required = True
    generate = certs_sub.add_parser("generate", help="make a CA and a serving certificate")
    generate.add_argument(
        "--out", type=_path, default=Path("certs"), help="folder to write the files to"
    )
    generate.add_argument(
        "--service", type=_dns_label, default="seguard", help="the webhook's Service"
    )
    generate.add_argument(
        "--namespace", type=_dns_label, default="seguard-system", help="the Service's namespace"
    )
    generate.add_argument(
        "--cluster-domain", type=_dns_name, default="cluster.local", help="the cluster's domain"
    )
    generate.add_argument(
        "--days", type=_positive_int, default=365, help="validity of the serving certificate"
    )
    generate.add_argument(
        "--ca-days", type=_positive_int, default=3650, help="validity of a new CA"
    )
    generate.add_argument(
        "--dns", type=_dns_name, action="append", default=[], help="extra DNS name (repeatable)"
    )
    generate.add_argument(
        "--ip", type=_ip_address, action="append", default=[], help="IP address SAN (repeatable)"
    )
    generate.add_argument(
        "--ca-from", type=_path, metavar="DIR", help="sign with the CA kept in DIR (renewal)"
    )
    generate.add_argument(
        "--ca-bundle-patch",
        action="store_true",
        help="also write ca-bundle-patch.yaml, a kustomize patch with the CA for both webhooks",
    )
    generate.set_defaults(func=cmd_certs_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logs.configure(logs.TEXT)  # until the command line says otherwise
    try:
        args = build_parser().parse_args(argv)
        if args.log_format is None:
            # serve: JSON lines for a log pipeline, plain text for someone at a terminal.
            machine = args.func is cmd_serve and not sys.stderr.isatty()
            args.log_format = logs.JSON if machine else logs.TEXT
        logs.configure(args.log_format, verbose=args.verbose)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except CommandError as exc:
        return _fail(str(exc), exc.status)
    except PolicyError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error worth a line.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        from webhook.kube import ClusterError
        from webhook.sources.files import ManifestError
        from webhook.sources.istiod import IstiodError
        from webhook.tls import CertificateError

        known = ManifestError | CertificateError | ClusterError | IstiodError | OSError | ValueError
        if isinstance(exc, known):
            return _fail(str(exc), EXIT_USAGE)
        return _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL)


def _fail(message: str, status: int) -> int:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"seguard: error: {line}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
