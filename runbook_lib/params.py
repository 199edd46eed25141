"""The runbook's parameters: one typed model, loaded from YAML or a notebook's namespace.

Every notebook's ``parameters`` cell lists these names as plain literals; papermill
(``-f parameters/lab.yaml``) or the operator overrides them. :func:`load` validates them
all before anything on the host changes: unknown names are refused, and every error names
the parameter, the bad value and a good example.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ParameterError
from .secrets import Secret, exposure

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
# An image reference as Docker parses it (distribution's reference/regexp.go): an optional
# registry host[:port]/, lower-case path components, an optional :tag, an optional @digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_IMAGE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# What a path in the stack file and Docker's command lines carries safely.
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._/@+-]+$")
# Docker's service names are at most 63 characters; the runbook's is STACK_registry.
MAX_STACK_NAME = 50
# Ports the swarm itself uses on every node.
SWARM_PORTS = {
    2377: "2377/tcp (swarm management)",
    7946: "7946 (swarm gossip)",
    4789: "4789/udp (overlay)",
}
_DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

# A good value for each parameter, shown in error messages.
EXAMPLES: dict[str, str] = {
    "host": "docker.example.com or 192.0.2.10",
    "ssh_port": "22",
    "ssh_user": "root or deploy",
    "ssh_key_file": "~/.ssh/id_ed25519",
    "ssh_password": "env:SSH_PASSWORD",
    "sudo_password": "env:SUDO_PASSWORD",
    "known_hosts": "~/.ssh/known_hosts",
    "ssh_timeout": "10",
    "docker_source": "distribution or docker",
    "docker_version": "null (latest) or 24.0.7",
    "swarm_advertise_addr": "null (auto) or 192.0.2.10",
    "allow_from": "[] (anyone) or [192.0.2.0/24, 198.51.100.7]",
    "work_dir": "/home/docker",
    "registry_host": "docker.example.com",
    "registry_names": "[registry.internal, 192.0.2.10]",
    "registry_port": "5000",
    "registry_image": "registry:2",
    "registry_publish_mode": "host or ingress",
    "stack_name": "manager",
    "registry_users": "{admin: env:REGISTRY_PASSWORD}",
    "registry_remove_users": "[olduser]",
    "registry_bcrypt_cost": "10",
    "tls_key_type": "ecdsa or rsa",
    "tls_key_size": "256 for ecdsa, 4096 for rsa",
    "tls_days": "365",
    "tls_renew_days": "30",
    "tls_ca": "false",
    "tls_ca_dir": "~/.local/share/swarm-registry-runbook/ca",
    "trust_on_runner": "false",
    "verify_image": "hello-world",
    "verify_push": "auto or always",
    "verify_archive": "null (pull verify_image from Docker Hub) or images/hello-world.tar",
    "seed_images": "[{archive: images/app.tar.gz, name: tools/app:1.0}, {archive: images/}]",
    "portainer_enabled": "true",
    "portainer_image": "portainer/portainer-ce:lts",
    "portainer_port": "9443",
    "portainer_edge_port": "null (no Edge agents) or 8000",
    "portainer_admin_password": "env:PORTAINER_PASSWORD",
    "nodes": "[{address: 192.0.2.11, role: worker}, {address: 192.0.2.12, role: manager}]",
    "remove_nodes": "[192.0.2.11]",
    "registry_storage_delete": "true",
    "registry_image_archive": "null (pull registry_image) or images/registry-2.tar",
    "mirror_enabled": "true",
    "mirror_upstream": "https://registry.example.com (no path)",
    "mirror_port": "5002",
    "mirror_username": "null, or the upstream's user",
    "mirror_password": "env:MIRROR_PASSWORD",
    "storage_delete_tags": "[myapp:old, tools/builder:2024-01]",
    "storage_gc": "true",
    "storage_gc_delete_untagged": "false",
    "backup_dir": "backups",
    "restore_from": "backups/docker.example.com-20261202T101500Z.tar.gz",
    "teardown_confirm": "docker.example.com (the value of host)",
    "teardown_volumes": "false",
}

SECRET_FIELDS = ("ssh_password", "sudo_password", "portainer_admin_password", "mirror_password")
_LABEL_KEY = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")


def _secret(v: Any, info) -> Any:  # noqa: ANN001
    return v if v is None or isinstance(v, Secret) else Secret(v, parameter=info.field_name)


def _users(v: Any) -> Any:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ValueError("must be a mapping of user name to a secret reference")
    out = {}
    for name, ref in v.items():
        _check_registry_user(str(name))
        out[str(name)] = (
            ref if isinstance(ref, Secret) else Secret(ref, parameter=f"registry_users.{name}")
        )
    return out


def _removed(v: list[str]) -> list[str]:
    for name in v:
        _check_registry_user(name)
    return v


def _address(v: str) -> str:
    if not is_host_or_ip(v):
        raise ValueError("not a valid host name or IP address")
    return v


def _names(v: list[str]) -> list[str]:
    for name in v:
        if not is_host_or_ip(name.removeprefix("*.")):
            raise ValueError(f"{name!r} is not a valid host name or IP address")
    return v


def _advertise(v: str | None) -> str | None:
    if v is not None:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            if not re.match(r"^[a-zA-Z0-9_.-]+$", v):
                raise ValueError("must be an IP address or an interface name") from None
    return v


def _upstream(v: str | None) -> str | None:
    """An http(s) URL with a host and no path: what distribution's ``proxy.remoteurl``
    takes, and what Docker's ``registry-mirrors`` forbids a path in."""
    if v is None:
        return v
    parsed = urlsplit(v)
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
        or parsed.username
    ):
        raise ParameterError(
            "mirror_upstream",
            v,
            "must be an http(s) URL with a host and an optional port, without a path, a "
            "query or credentials",
            EXAMPLES["mirror_upstream"],
        )
    return v.rstrip("/")


def _ssh_user(v: str) -> str:
    if not _USER.match(v):
        raise ValueError("not a valid Unix user name")
    return v


def _key_file(v: str | None) -> str | None:
    return v if v is None else _check_key_file(v)


def _networks(v: list[str]) -> list[str]:
    out = []
    for item in v:
        try:
            net = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IPv4 address or network") from None
        if net.version != 4:
            raise ValueError(f"{item!r}: only IPv4 networks can be allowed (iptables)")
        out.append(str(net))
    return list(dict.fromkeys(out))


def _version(v: str | None) -> str | None:
    # What Debian and RPM versions are made of: apt and dnf take it as one argument.
    if v is not None and not re.fullmatch(r"[0-9][0-9A-Za-z.:+~_-]{0,63}", v):
        raise ValueError("is not a package version (digits, letters and . : + ~ _ -)")
    return v


def _known_hosts(v: str) -> str:
    # os.path's tests, not Path's: they answer False for a path in a folder this user
    # may not read (Path.is_dir raises PermissionError there).
    path = os.path.expanduser(v)
    parent = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; name the known_hosts file in it")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{path} is not a regular file")
    if not os.path.exists(path) and os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"{parent} is not a folder")
    return v


def _docker_name(v: str) -> str:
    if not _DOCKER_NAME.match(v):
        raise ValueError("Docker names are letters, digits, '_', '.', '-'")
    if len(v) > MAX_STACK_NAME:
        raise ValueError(
            f"is {len(v)} characters; at most {MAX_STACK_NAME}, so that Docker's service "
            f"name ({v[:8]}…_registry) stays within its 63"
        )
    return v


def _image(v: str) -> str:
    if len(v) > 255 or not _IMAGE.match(v):
        raise ValueError(
            "is not an image reference Docker accepts: [registry/]name[:tag][@sha256:digest], "
            "the name in lower case"
        )
    return v


def _abs_path(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError("must be an absolute path")
    v = posixpath.normpath(v)
    if v.startswith("//"):
        v = "/" + v.lstrip("/")
    if v == "/":
        raise ValueError("must be a folder of its own, not / (it resolves to /)")
    if not _PATH_CHARS.match(v):
        raise ValueError(
            "may hold only letters, digits and . _ / @ + - : the stack file and Docker's "
            "command lines carry it as is"
        )
    if any(len(part.encode()) > 255 for part in v.split("/")):
        raise ValueError("has a path component longer than 255 bytes")
    if len(v) > 1024:
        raise ValueError("is longer than 1024 characters")
    return v


def _key_size(v: int, info) -> int:  # noqa: ANN001
    allowed = {"ecdsa": (256, 384), "rsa": (2048, 3072, 4096)}[
        info.data.get("tls_key_type", "ecdsa")
    ]
    if v not in allowed:
        raise ValueError(f"must be one of {', '.join(map(str, allowed))} for this key type")
    return v


def _users_consistent(p: Params) -> Params:
    if not p.registry_users:
        raise ParameterError(
            "registry_users",
            {},
            "at least one user is needed, or the registry refuses everyone",
            EXAMPLES["registry_users"],
        )
    both = sorted(set(p.registry_users) & set(p.registry_remove_users))
    if both:
        raise ParameterError(
            "registry_remove_users", both, "these users are also in registry_users", "[olduser]"
        )
    p._ports_apart()
    if p.tls_ca:
        check_ca_dir(Path(p.tls_ca_dir).expanduser())
    if p.portainer_enabled and p.stack_name == "portainer":
        raise ParameterError(
            "stack_name",
            p.stack_name,
            "Portainer's own stack has that name: the two would share their services' names",
            "manager",
        )
    return p


class Node(BaseModel):
    """A host of the swarm beyond the first manager (``host``). What it leaves out, it
    takes from the top-level parameters: SSH user, port, key file and sudo password."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    address: str
    role: Literal["manager", "worker"] = "worker"
    labels: dict[str, str] = {}
    ssh_user: str | None = None
    ssh_port: int | None = Field(None, ge=1, le=65535)
    ssh_key_file: str | None = None
    sudo_password: Secret | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not is_host_or_ip(v):
            raise ValueError("not a valid host name or IP address")
        return v

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, v: str | None) -> str | None:
        if v is not None and not _USER.match(v):
            raise ValueError("not a valid Unix user name")
        return v

    @field_validator("ssh_key_file")
    @classmethod
    def _key_file(cls, v: str | None) -> str | None:
        return v if v is None else _check_key_file(v)

    @field_validator("sudo_password", mode="before")
    @classmethod
    def _secret(cls, v: Any, info) -> Any:  # noqa: ANN001
        return (
            v if v is None or isinstance(v, Secret) else Secret(v, parameter="nodes.sudo_password")
        )

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _LABEL_KEY.match(key) or len(key) > 255:
                raise ValueError(
                    f"label {key!r}: letters, digits, '.', '_' and '-', starting and ending "
                    "with a letter or digit"
                )
            if any(ord(c) < 32 for c in value):
                raise ValueError(f"label {key!r}: its value holds a control character")
        return v


# A repository and tag in the private registry: no registry host, no digest.
_REPO_TAG = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?$")


def _archive_path(v: str) -> str:
    path = os.path.expanduser(v)
    if not os.path.exists(path):
        raise ValueError(f"no such file or folder on this machine: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path} cannot be read")
    return v


def _seed_shorthand(v: Any) -> Any:
    # A bare path stands for {archive: PATH}: the archive's own names.
    if isinstance(v, list):
        return [{"archive": x} if isinstance(x, str) else x for x in v]
    return v


def _optional_archive(v: str | None) -> str | None:
    return v if v is None else _archive_path(v)


def _repo_tag(v: str | None) -> str | None:
    if v is not None and (len(v) > 255 or not _REPO_TAG.match(v)):
        raise ValueError(
            "is not a name in the registry: repository[:tag], in lower case, without the "
            "registry's host (it is registry_host) and without a digest"
        )
    return v


class SeedImage(BaseModel):
    """An image archive on the machine running the runbook, and the name its image gets in
    the registry (None: the archive's own names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archive: str
    name: str | None = None

    _archive = field_validator("archive")(_archive_path)
    _name = field_validator("name")(_repo_tag)

    @model_validator(mode="after")
    def _one_name_one_file(self) -> SeedImage:
        if self.name is not None and os.path.isdir(os.path.expanduser(self.archive)):
            raise ParameterError(
                "name",
                self.name,
                "the archive is a folder, whose archives each hold their own names: leave "
                "name null, or list each archive with its name",
                "null",
            )
        return self


# -- the parameters' checks, bound to their fields in Params below ----------------------
class Params(BaseModel):
    """All parameters. See ``parameters/example.yaml`` for what each one means."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # How to reach the host
    host: str
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str = "root"
    ssh_key_file: str | None = None
    ssh_password: Secret | None = None
    sudo_password: Secret | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    trust_unknown_host_key: bool = False
    ssh_timeout: float = Field(10.0, gt=0, le=300)

    # Docker engine
    docker_source: Literal["distribution", "docker"] = "docker"
    docker_version: str | None = None

    # Swarm
    swarm_advertise_addr: str | None = None
    # Who may reach the registry's and the swarm's ports (IPv4 networks); [] is anyone.
    allow_from: list[str] = []
    # The swarm's other hosts; ``host`` is its first manager.
    nodes: list[Node] = []
    # Hosts to take out of the swarm (notebook 11), by the address the runbook reaches them.
    remove_nodes: list[str] = []

    # Registry
    work_dir: str = "/home/docker"
    registry_host: str
    registry_names: list[str] = []
    registry_port: int = Field(5000, ge=1, le=65535)
    registry_image: str = "registry:2"
    registry_publish_mode: Literal["host", "ingress"] = "host"
    stack_name: str = "manager"
    registry_users: dict[str, Secret] = {}
    registry_remove_users: list[str] = []
    registry_bcrypt_cost: int = Field(10, ge=4, le=16)
    # The registry lets tags be deleted (REGISTRY_STORAGE_DELETE_ENABLED); notebook 14 needs it.
    registry_storage_delete: bool = False
    # An archive on the runner (docker save) holding registry_image, loaded into the first
    # manager's Docker by notebook 07: for a host that cannot pull it.
    registry_image_archive: str | None = None

    # TLS
    tls_key_type: Literal["ecdsa", "rsa"] = "ecdsa"
    tls_key_size: int = 256
    tls_days: int = Field(365, ge=1, le=3650)
    # A certificate with fewer days left than this is replaced by the next run of 05.
    tls_renew_days: int = Field(30, ge=1, le=3650)
    tls_ca: bool = False
    # Where the local CA's private key lives, on the machine running the runbook.
    tls_ca_dir: str = "~/.local/share/swarm-registry-runbook/ca"
    trust_on_runner: bool = False

    # Verification
    verify_image: str = "hello-world"
    verify_push: Literal["auto", "always"] = "auto"
    # An archive on the runner holding verify_image: seeded instead of pulled (notebook 08).
    verify_archive: str | None = None

    # Seeding (notebook 18): image archives on the runner, put into the registry.
    seed_images: list[SeedImage] = []

    # Portainer
    portainer_enabled: bool = False
    portainer_image: str = "portainer/portainer-ce:lts"
    portainer_agent_image: str = "portainer/agent:lts"
    portainer_port: int = Field(9443, ge=1, le=65535)
    # The Edge agents' tunnel port (Portainer's 8000): published only when set.
    portainer_edge_port: int | None = Field(None, ge=1, le=65535)
    portainer_admin_password: Secret | None = None

    # Mirror (notebook 19): a pull-through cache of an upstream registry for every Docker host.
    mirror_enabled: bool = False
    mirror_upstream: str | None = None
    mirror_port: int = Field(5002, ge=1, le=65535)
    mirror_username: str | None = None
    mirror_password: Secret | None = None

    # Storage (notebook 14): tags to delete ("REPOSITORY:TAG"), and garbage collection.
    storage_delete_tags: list[str] = []
    storage_gc: bool = True
    storage_gc_delete_untagged: bool = False

    # Backup and restore (notebooks 15 and 16), on the machine running the runbook.
    backup_dir: str = "backups"
    restore_from: str | None = None

    # Teardown (notebook 17): it runs only when this equals ``host``.
    teardown_confirm: str | None = None
    teardown_volumes: bool = False

    # Set by `runbook run --check`: show the plan, change nothing.
    check_mode: bool = False

    # -- field checks ----------------------------------------------------------------------
    # The module functions above, bound to their fields here: undecorated, each can be
    # called alone, and mutation testing reaches them (mutmut skips decorated functions).
    _secret = field_validator(
        "ssh_password",
        "sudo_password",
        "portainer_admin_password",
        "mirror_password",
        mode="before",
    )(_secret)
    _upstream = field_validator("mirror_upstream")(_upstream)
    _users = field_validator("registry_users", mode="before")(_users)
    _removed = field_validator("registry_remove_users")(_removed)
    _address = field_validator("host", "registry_host")(_address)
    _names = field_validator("registry_names")(_names)
    _advertise = field_validator("swarm_advertise_addr")(_advertise)
    _ssh_user = field_validator("ssh_user")(_ssh_user)
    _key_file = field_validator("ssh_key_file")(_key_file)
    _networks = field_validator("allow_from")(_networks)
    _version = field_validator("docker_version")(_version)
    _known_hosts = field_validator("known_hosts")(_known_hosts)
    _docker_name = field_validator("stack_name")(_docker_name)
    _image = field_validator(
        "registry_image", "verify_image", "portainer_image", "portainer_agent_image"
    )(_image)
    _abs_path = field_validator("work_dir")(_abs_path)
    _verify_archive = field_validator("verify_archive", "registry_image_archive")(_optional_archive)
    _seed_images = field_validator("seed_images", mode="before")(_seed_shorthand)
    _key_size = field_validator("tls_key_size")(_key_size)
    _users_consistent = model_validator(mode="after")(_users_consistent)

    def _ports_apart(self) -> None:
        """Ports that would be published twice, or over the swarm's own, are refused together."""
        ports = {"registry_port": self.registry_port}
        if self.portainer_enabled:
            ports["portainer_port"] = self.portainer_port
            if self.portainer_edge_port is not None:
                ports["portainer_edge_port"] = self.portainer_edge_port
        if self.mirror_enabled:
            ports["mirror_port"] = self.mirror_port
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in SWARM_PORTS:
                raise ParameterError(
                    name, port, f"the swarm itself uses {SWARM_PORTS[port]}", EXAMPLES[name]
                )
            if port in seen:
                raise ParameterError(
                    name,
                    port,
                    f"{seen[port]} is the same port: each needs its own",
                    EXAMPLES[name],
                )
            seen[port] = name

    @model_validator(mode="after")
    def _mirror(self) -> Params:
        if self.mirror_enabled and not self.mirror_upstream:
            raise ParameterError(
                "mirror_upstream",
                None,
                "is required when mirror_enabled is true: the registry the mirror caches",
                EXAMPLES["mirror_upstream"],
            )
        if bool(self.mirror_username) != bool(self.mirror_password):
            name = "mirror_password" if self.mirror_username else "mirror_username"
            raise ParameterError(
                name,
                None if name == "mirror_password" else "<hidden>",
                "mirror_username and mirror_password go together (or neither, for an "
                "upstream that needs no login)",
                EXAMPLES[name],
            )
        return self

    @model_validator(mode="after")
    def _renewal(self) -> Params:
        if self.tls_renew_days >= self.tls_days:
            raise ParameterError(
                "tls_renew_days",
                self.tls_renew_days,
                f"must be less than tls_days ({self.tls_days}), or every run would replace "
                "the certificate it just made",
                EXAMPLES["tls_renew_days"],
            )
        return self

    @model_validator(mode="after")
    def _nodes_apart(self) -> Params:
        """Each node once, and none of them the first manager again."""
        seen = {_node_key(self.host, self.ssh_port): "host"}
        for i, node in enumerate(self.nodes):
            key = _node_key(node.address, node.ssh_port or self.ssh_port)
            if key in seen:
                what = "the first manager (host)" if seen[key] == "host" else seen[key]
                raise ParameterError(
                    f"nodes[{i}].address",
                    node.address,
                    f"is {what} again: list each host once; host is the first manager and "
                    "is not listed in nodes",
                    EXAMPLES["nodes"],
                )
            seen[key] = f"nodes[{i}]"
        listed = {_node_key(n.address, 0) for n in self.nodes}
        for i, address in enumerate(self.remove_nodes):
            if not is_host_or_ip(address):
                raise ParameterError(
                    f"remove_nodes[{i}]",
                    address,
                    "not a valid host name or IP address",
                    EXAMPLES["remove_nodes"],
                )
            if _node_key(address, 0) == _node_key(self.host, 0):
                raise ParameterError(
                    f"remove_nodes[{i}]",
                    address,
                    "is the first manager (host), which holds the registry: the runbook does "
                    "not take it out of its own swarm",
                    EXAMPLES["remove_nodes"],
                )
            if _node_key(address, 0) in listed:
                raise ParameterError(
                    f"remove_nodes[{i}]",
                    address,
                    "is also in nodes, where the next run would join it again: take it out of "
                    "nodes",
                    EXAMPLES["remove_nodes"],
                )
        return self

    @model_validator(mode="after")
    def _tags_to_delete(self) -> Params:
        """Each tag to delete as REPOSITORY:TAG, named by its place in the list."""
        for i, item in enumerate(self.storage_delete_tags):
            if split_tag(item) is None:
                raise ParameterError(
                    f"storage_delete_tags[{i}]",
                    item,
                    "must be REPOSITORY:TAG as the registry names it (no registry host, no "
                    "@digest; the repository in lower case)",
                    EXAMPLES["storage_delete_tags"],
                )
        return self

    # -- derived values -------------------------------------------------------------------
    @property
    def managers(self) -> int:
        """How many managers the swarm has: the first one and the nodes listed as managers."""
        return 1 + sum(n.role == "manager" for n in self.nodes)

    @property
    def warnings(self) -> list[str]:
        """What is allowed but unwise, said by preflight."""
        out = []
        if self.managers % 2 == 0:
            out.append(
                f"{self.managers} managers: the swarm keeps working while a majority of its "
                f"managers is up, which for {self.managers} is {self.managers // 2 + 1}, as for "
                f"{self.managers + 1}; an even number adds a machine that can fail without "
                f"making the swarm survive more failures: use {self.managers - 1} or "
                f"{self.managers + 1}"
            )
        return out

    @property
    def registry(self) -> str:
        """``HOST:PORT``, what clients log in to, tag with and push to."""
        return f"{_bracket(self.registry_host)}:{self.registry_port}"

    @property
    def all_registry_names(self) -> list[str]:
        return list(dict.fromkeys([self.registry_host, *self.registry_names]))


def check_ca_dir(folder: Path) -> None:
    """With tls_ca, the folder that keeps the CA's key must be its owner's alone (it is
    made 0700 when missing)."""
    import os

    if not folder.exists():
        return
    if not folder.is_dir():
        raise ParameterError("tls_ca_dir", str(folder), "is not a folder", EXAMPLES["tls_ca_dir"])
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ParameterError(
            "tls_ca_dir",
            str(folder),
            f"holds the CA's private key, so it must be yours alone (mode "
            f"{st.st_mode & 0o777:o}): chmod 700 {folder}",
            EXAMPLES["tls_ca_dir"],
        )


def _node_key(address: str, port: int) -> tuple[str, int]:
    """One spelling per host: IP addresses normalised, names in lower case."""
    try:
        return (str(ipaddress.ip_address(address)), port)
    except ValueError:
        return (address.lower().rstrip("."), port)


def _check_key_file(v: str) -> str:
    path = Path(v).expanduser()
    if not os.path.isfile(path):  # False when unreadable
        raise ValueError(f"no such file (or not one you may read): {path}")
    _private_key(path)
    problem = exposure(path)
    if problem:
        raise ValueError(problem)
    return v


def _private_key(path: Path) -> None:
    """Refuse what is not a private key: a public key, or any other file."""
    try:
        head = path.read_bytes()[:4096]
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if b"PRIVATE KEY-----" in head:
        return
    if head.startswith((b"ssh-", b"ecdsa-", b"sk-")):
        raise ValueError(
            f"{path} is a public key; give the private key (the same name without .pub)"
        )
    raise ValueError(f"{path} is not a private key (no 'BEGIN ... PRIVATE KEY' line)")


def is_host_or_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(value)) and not value.replace(".", "").isdigit()


def _check_registry_user(name: str) -> None:
    if not name or ":" in name or any(c.isspace() or ord(c) < 32 for c in name) or len(name) > 255:
        raise ValueError(
            f"user name {name!r} is not allowed: it must be non-empty, without ':' or spaces"
        )


# A repository in the registry (distribution's reference grammar, without a domain) and
# a tag: what /v2/<name>/manifests/<tag> takes.
_REPO_TAG = re.compile(rf"^({_COMPONENT}(?:/{_COMPONENT})*):([\w][\w.-]{{0,127}})$")


def split_tag(value: object) -> tuple[str, str] | None:
    """``"tools/builder:2024-01"`` -> ``("tools/builder", "2024-01")``; None when it is not
    REPOSITORY:TAG (a registry host before it is taken for a repository with a port)."""
    if not isinstance(value, str) or len(value) > 255:
        return None
    m = _REPO_TAG.match(value)
    return (m.group(1), m.group(2)) if m else None


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def load(values: Mapping[str, Any]) -> Params:
    """Validate a mapping of parameters; raise :class:`ParameterError` on the first problem."""
    try:
        return Params(**dict(values))
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        name = name.lstrip(".") or "?"
        top = str(err["loc"][0]) if err["loc"] else name
        if err["type"] == "extra_forbidden":
            raise ParameterError(
                name,
                "<hidden>",  # a mistyped secret's name would otherwise show its value
                "unknown parameter",
                f"one of: {', '.join(_RECORDS.get(top, Params).model_fields)}",
            ) from None
        if err["type"] == "missing":
            # pydantic's input for a missing field is the whole mapping, pasted passwords too.
            raise ParameterError(name, "<missing>", "is required", EXAMPLES.get(top)) from None
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ParameterError):
            if len(err["loc"]) > 1:  # inside a record: named by where it sits (nodes[0]...)
                if isinstance(err["loc"][-1], int):  # the record's own check names its field
                    name = f"{name}.{cause.name}"
                raise ParameterError(name, cause.value, cause.problem, cause.example) from None
            raise cause from None
        problem = err["msg"].removeprefix("Value error, ")
        # registry_users maps names to references, but may hold pasted passwords.
        shown = "<hidden>" if top == "registry_users" else err.get("input")
        if isinstance(shown, Mapping):  # a record may hold a secret's value
            shown = "<hidden>"
        raise ParameterError(name, shown, problem, EXAMPLES.get(top)) from None


_RECORDS = {"nodes": Node, "seed_images": SeedImage}


def load_yaml(path: str | Path) -> Params:
    """Read and validate a parameters file."""
    return load(read_yaml(path))


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (where it would
    keep the last value silently)."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201 (PyYAML's API)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # PyYAML refuses unhashable keys itself, with its own message
            if key in seen:
                raise ParameterError(
                    str(key)[:80],
                    "<hidden>",
                    f"is given twice (line {key_node.start_mark.line + 1}); keep one",
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A parameters file: UTF-8 YAML, one mapping, no key twice."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParameterError("parameters file", str(path), exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParameterError(
            "parameters file",
            str(path),
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it "
            "as UTF-8",
        ) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ParameterError(
            "parameters file", str(path), f"not valid YAML: {str(exc)[:400]}"
        ) from None
    if not isinstance(data, dict):
        raise ParameterError(
            "parameters file",
            str(path),
            "must be a YAML mapping of names to values",
            "host: 192.0.2.10",
        )
    return data


def from_namespace(namespace: Mapping[str, Any]) -> Params:
    """Collect the parameters a notebook's ``parameters`` cell (and papermill) defined."""
    return load({k: namespace[k] for k in Params.model_fields if k in namespace})
