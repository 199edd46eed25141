"""TLS for the registry (tutorial: 生成TLS证书): work directory, certificate, client trust.

The pure work (keys, certificates, the keep-or-renew decision) is in :mod:`runbook_lib.tls`;
this module reads and writes the files on the host. Layout, as in the tutorial:

    WORK_DIR/certs/HOST.key   the registry's private key (0600)
    WORK_DIR/certs/HOST.crt   its certificate
    TLS_CA_DIR/HOST-ca.key    the local CA's key, with tls_ca: on the machine running the
                              runbook, not on the registry's host (0600 in a 0700 folder)
    WORK_DIR/certs/ca.crt     what clients trust: the CA, or the self-signed certificate
    /etc/docker/certs.d/NAME:PORT/ca.crt   Docker's trust, for every name of the registry
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from . import safepath, tls
from .context import Runbook
from .errors import MissingInput, RunbookError
from .hosts import LocalHost
from .names import Names, trust_dirs
from .params import check_ca_dir
from .steps import (
    Call,
    Cmd,
    Outcome,
    Plan,
    Put,
    Skip,
    Verified,
    path_states,
    plan_dir,
    plan_file,
    plan_mode,
    step,
)


def layout(rb: Runbook) -> Names:
    """Where the registry's files are (see :mod:`runbook_lib.names`); checked once per
    notebook before anything there is read or written: only root may be able to change
    them (see :mod:`runbook_lib.safepath`)."""
    lay = rb.names
    if "work_dir checked" not in rb.cache:
        safepath.check(rb.host, "work_dir", *lay.trusted)
        rb.cache["work_dir checked"] = True
    return lay


@step("Work directory")
def work_dir(rb: Runbook) -> Plan:
    lay = layout(rb)
    wanted = [(lay.work_dir, 0o755), (lay.certs, 0o700), (lay.auth, 0o700)]
    states = path_states(rb.host, *(p for p, _ in wanted))
    # An existing work directory keeps its mode (root owns it, or layout() refused it);
    # the folders that hold secrets are made root-only whatever they were.
    plan = [] if states[0].exists else plan_dir(states[0], lay.work_dir, 0o755)
    for (path, mode), st in zip(wanted[1:], states[1:], strict=True):
        plan += plan_dir(st, path, mode)
    return Plan(
        plan,
        changed=f"{lay.work_dir} with certs/ and auth/ (owner-only) ready",
        unchanged=f"{lay.work_dir} with certs/ and auth/ (owner-only) exists",
    )


@step("Certificate")
def certificate(rb: Runbook) -> Plan:
    p, lay, host = rb.p, layout(rb), rb.host
    names = p.all_registry_names
    cert_pem, key_pem, ca_now = host.get(lay.cert), host.get(lay.key), host.get(lay.ca_cert)
    reason = tls.needs_new_cert(cert_pem, key_pem, names, p.tls_renew_days) or tls.trust_problem(
        cert_pem, ca_now, p.tls_ca
    )
    if reason is None:
        info = tls.cert_info(tls.load_cert(cert_pem))
        # A kept self-signed certificate is its own ca.crt (the tutorial's layout has none).
        fix = info.is_self_signed and ca_now != cert_pem
        # A kept key stays root's alone: its mode and owner are checked on every run.
        (key_state,) = path_states(host, lay.key)
        plan = plan_mode(key_state, lay.key, 0o600)
        done = ["ca.crt set to it"] if fix else []
        done += ["its key made root's alone (0600)"] if plan else []
        return Plan(
            ([_put_cert(lay.ca_cert, cert_pem, info)] if fix else []) + plan,
            changed=f"kept: {_describe(info)}; {' and '.join(done)}",
            unchanged=f"kept: {_describe(info)}",
            details=_details(info),
        )
    plan = []
    if p.tls_ca:
        ca_cert, ca_key, ca_plan = _ca(rb, lay)
        plan += ca_plan
    else:
        ca_cert = ca_key = None
    key = tls.generate_key(p.tls_key_type, p.tls_key_size)
    cert = tls.make_server_cert(key, names, p.tls_days, ca_key, ca_cert)
    info = tls.cert_info(cert)
    cert_pem = tls.cert_to_pem(cert)
    plan += [Put(lay.key, tls.key_to_pem(key), 0o600), _put_cert(lay.cert, cert_pem, info)]
    if not p.tls_ca:
        plan.append(_put_cert(lay.ca_cert, cert_pem, info))
    return Plan(plan, changed=f"new ({reason}): {_describe(info)}", details=_details(info))


@step("Expiry")
def expiry(rb: Runbook) -> Verified:
    """When the registry's certificate, and with ``tls_ca`` the local CA, stop being valid;
    a warning when the next step will replace the certificate, or the CA is within its last
    year (the next certificate then comes with a new CA, which clients must trust again)."""
    lay = layout(rb)
    cert_pem, ca_pem_now = rb.host.get(lay.cert), rb.host.get(lay.ca_cert)
    if not cert_pem:
        raise MissingInput(f"{lay.cert} is missing: run notebook 05 (TLS) first")
    cert = tls.cert_info(tls.load_cert(cert_pem))
    details = {f"certificate {k}": v for k, v in _details(cert).items()}
    warnings = []
    if cert.days_left < rb.p.tls_renew_days:
        warnings.append(
            f"the certificate has {cert.days_left} days left, fewer than tls_renew_days "
            f"({rb.p.tls_renew_days}): the next step replaces it"
        )
    if rb.p.tls_ca and ca_pem_now and ca_pem_now != cert_pem:
        ca = tls.cert_info(tls.load_cert(ca_pem_now))
        details.update({f"CA {k}": v for k, v in _details(ca).items()})
        if ca.days_left <= 365:
            warnings.append(
                f"the CA has {ca.days_left} days left: the next certificate comes with a new "
                "CA, which every client must trust again"
            )
    return Verified(
        f"the certificate expires {cert.not_after:%Y-%m-%d} ({cert.days_left} days)",
        details=details,
        warnings=warnings,
    )


def _put_cert(path: str, pem: bytes, info: tls.CertInfo) -> Put:
    """A certificate is public: its summary is shown, not its PEM."""
    return Put(path, pem, 0o644, summary=f"certificate: {_describe(info)}; SHA-256 {info.sha256}")


def ca_key_path(rb: Runbook) -> Path:
    """Where the runner keeps the local CA's private key."""
    return Path(rb.p.tls_ca_dir).expanduser() / f"{rb.p.registry_host}-ca.key"


def _runner_ca_key(rb: Runbook) -> bytes | None:
    path = ca_key_path(rb)
    check_ca_dir(path.parent)  # checked when the parameters loaded; it may have changed
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _keep_on_runner(rb: Runbook, pem: bytes) -> Call:
    path = ca_key_path(rb)

    def write(_host: object) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)

    return Call(f"write {path} on this machine (mode 600)", write)


@step("CA key", skip=lambda rb: None if rb.p.tls_ca else "tls_ca is false: no local CA")
def ca_key(rb: Runbook) -> Plan:
    """With ``tls_ca``, the CA's private key lives on the runner, never on the registry's
    host: whoever reads it there can make certificates that every client trusts. A key an
    earlier run left on the host is moved."""
    lay, here = layout(rb), ca_key_path(rb)
    on_host, on_runner = rb.host.get(lay.ca_key), _runner_ca_key(rb)
    if on_host is None:
        where = f"on this machine, {here}" if on_runner else "not made yet (next step)"
        return Plan([], changed="", unchanged=f"the CA's key is {where}; none on the host")
    if on_runner is not None and on_runner != on_host:
        raise RunbookError(
            f"{lay.ca_key} on the host and {here} here are different keys: keep the one that "
            f"signed {lay.ca_cert} (openssl x509 -noout -pubkey), remove the other, run again"
        )
    plan = ([] if on_runner else [_keep_on_runner(rb, on_host)]) + [Cmd(["rm", "-f", lay.ca_key])]
    return Plan(plan, changed=f"the CA's key moved from the host to this machine, {here}")


def _ca(rb: Runbook, lay: Names):
    """The local CA: kept when valid for a year more, else made anew (its key kept here)."""
    pem = rb.host.get(lay.ca_cert)
    # In check mode an earlier run's key may still be on the host (see ca_key).
    key_pem = _runner_ca_key(rb) or rb.host.get(lay.ca_key)
    if pem and key_pem:
        try:
            cert, key = tls.load_cert(pem), tls.load_key(key_pem)
            if tls.cert_info(cert).days_left > max(rb.p.tls_days, 365):
                return cert, key, []
        except ValueError:
            pass
    key = tls.generate_key(rb.p.tls_key_type, rb.p.tls_key_size)
    cert = tls.make_ca(key, f"{rb.p.registry_host} registry CA", 3650)
    ca_put = _put_cert(lay.ca_cert, tls.cert_to_pem(cert), tls.cert_info(cert))
    return cert, key, [_keep_on_runner(rb, tls.key_to_pem(key)), ca_put]


def _describe(info: tls.CertInfo) -> str:
    names = ", ".join([*info.dns_names, *info.ip_addresses])
    how = "self-signed" if info.is_self_signed else "signed by the local CA"
    return f"{info.key_type}, {how}, for {names}, expires {info.not_after:%Y-%m-%d} ({info.days_left} days)"


def _details(info: tls.CertInfo) -> dict[str, str]:
    return {
        "names": ", ".join([*info.dns_names, *info.ip_addresses]),
        "key": info.key_type,
        "SHA-256 fingerprint": info.sha256,
        "expires": f"{info.not_after:%Y-%m-%d %H:%M} UTC ({info.days_left} days)",
    }


def ca_pem(rb: Runbook) -> bytes:
    """What clients trust (public), read once per notebook after the certificate step. In a
    dry run before the first real run, nothing yet. Read on the first manager, where the
    registry's files are, for every host of the swarm."""
    rb = rb.main
    if "ca.crt" not in rb.cache:
        path = layout(rb).ca_cert
        pem = rb.host.get(path) or b""
        if not pem and not rb.dry_run:
            # Trusting an empty file would make every client fail with a TLS error later.
            raise MissingInput(f"{path} is missing: run notebook 05 (TLS) first")
        rb.cache["ca.crt"] = pem
    return rb.cache["ca.crt"]


# Docker trusts every *.crt file in a registry's certs.d folder (its certificates
# directory loader, ReadCertsDirectory in moby's registry/registry.go): the one a new certificate
# replaces stays trusted under this name until the registry answers with the new one.
PREVIOUS = "previous-ca.crt"


def plan_trust(host, ca: bytes, names: list[str], port: int, keep_previous: bool = True) -> list:
    """Folders and ca.crt files for Docker's trust of every registry name
    (``install -d`` creates /etc/docker/certs.d itself when missing). A ca.crt that is
    replaced is kept as previous-ca.crt (``keep_previous``): the registry still serves
    the old certificate until notebook 07 deploys the new one, and a run that stops in
    between must not leave clients unable to pull."""
    import hashlib

    dirs = trust_dirs(names, port)
    states = path_states(host, *dirs, *(f"{d}/ca.crt" for d in dirs))
    shown = _ca_summary(ca)
    plan = []
    for d, dstate, fstate in zip(dirs, states[: len(dirs)], states[len(dirs) :], strict=True):
        plan += plan_dir(dstate, d, 0o755)
        replaced = fstate.exists and fstate.sha256 != hashlib.sha256(ca).hexdigest()
        if replaced and keep_previous:
            plan.append(Cmd(["cp", "-p", f"{d}/ca.crt", f"{d}/{PREVIOUS}"]))
        plan += [replace(a, summary=shown) for a in plan_file(fstate, f"{d}/ca.crt", ca)]
    return plan


@step("Only the current certificate trusted", each_host=True)
def forget_previous(rb: Runbook) -> Plan:
    """Once the registry answers with its new certificate (notebook 07's wait), Docker stops
    trusting the one it replaced."""
    dirs = trust_dirs(rb.p.all_registry_names, rb.p.registry_port)
    states = path_states(rb.host, *(f"{d}/{PREVIOUS}" for d in dirs))
    old = [f"{d}/{PREVIOUS}" for d, s in zip(dirs, states, strict=True) if s.exists]
    return Plan(
        [Cmd(["rm", "-f", "--", *old])] if old else [],
        changed="the replaced certificate is no longer trusted: the registry answers with "
        "the new one",
        unchanged="Docker trusts the current certificate only",
    )


def _ca_summary(ca: bytes) -> str | None:
    try:
        info = tls.cert_info(tls.load_cert(ca))
    except ValueError:
        return None
    return f"the registry's CA: {_describe(info)}; SHA-256 {info.sha256}"


_TRUSTED = r"""
for d in /etc/docker/certs.d/*/; do
  [ -f "$d/ca.crt" ] && printf '%s %s\n' "$(sha256sum < "$d/ca.crt" | cut -d' ' -f1)" "${d%/}"
done
true
"""


def stale_trust(listing: str, ca: bytes, keep: list[str]) -> list[str]:
    """Folders of Docker's trust that hold this registry's ca.crt under a name or port it
    no longer has (``registry_port`` moved, a name dropped): the runbook made them. This
    registry's ca.crt is the one it installs now, or the one it replaces (in the folders it
    keeps, before the change): a name dropped usually comes with a new certificate."""
    import hashlib

    found = [line.split(" ", 1) for line in listing.splitlines() if " " in line]
    ours = {hashlib.sha256(ca).hexdigest()} | {digest for digest, d in found if d in keep}
    return [d for digest, d in found if digest in ours and d not in keep]


@step("Docker trusts the registry", each_host=True)
def trust_on_host(rb: Runbook) -> Plan:
    """Install ca.crt where the host's Docker looks for it, for every registry name; remove
    the folders an earlier run made for a port or name the registry no longer has."""
    p, ca = rb.p, ca_pem(rb)
    # The registry's port, and the pull-through cache's (notebook 19), which serves the
    # same certificate.
    ports = [p.registry_port] + ([p.mirror_port] if p.mirror_enabled else [])
    wanted = [d for port in ports for d in trust_dirs(p.all_registry_names, port)]
    listed = ", ".join(d.rsplit("/", 1)[1] for d in wanted)
    plan = [a for port in ports for a in plan_trust(rb.host, ca, p.all_registry_names, port)]
    stale = []
    if ca:
        listing = rb.host.sh(_TRUSTED, display="sha256sum /etc/docker/certs.d/*/ca.crt").stdout
        stale = stale_trust(listing, ca, wanted)
    plan += [Cmd(["rm", "-rf", "--", d]) for d in stale]
    gone = f"; removed {', '.join(d.rsplit('/', 1)[1] for d in stale)}" if stale else ""
    return Plan(
        plan,
        changed=f"ca.crt installed for {listed}{gone}"
        if len(plan) > len(stale)
        else f"ca.crt in place for {listed}{gone}",
        unchanged=f"ca.crt in place for {listed}",
    )


@step("This machine trusts the registry")
def trust_on_runner(rb: Runbook) -> Outcome:
    """Keep ca.crt in the run folder; with ``trust_on_runner``, install it here as well."""
    ca = ca_pem(rb)
    run_dir = os.environ.get("RUNBOOK_RUN_DIR")
    kept = ""
    if run_dir and ca:
        Path(run_dir, "ca.crt").write_bytes(ca)
        kept = f"; ca.crt kept in {run_dir}"
    if not rb.p.trust_on_runner:
        return Skip(f"not asked (trust_on_runner: false){kept}")
    local = LocalHost()
    return Plan(
        plan_trust(local, ca, rb.p.all_registry_names, rb.p.registry_port, keep_previous=False),
        changed=f"ca.crt installed here{kept}",
        unchanged=f"ca.crt already trusted here{kept}",
        on=local,
    )
