"""Every name and path the runbook derives from its parameters, in one place.

A step asks ``rb.names`` (or :func:`of` with the parameters) instead of writing
``f"{stack_name}_registry"`` or ``f"{work_dir}/certs"`` itself, so that a name is spelled
once and two modules cannot disagree about where a file lives or what a service is called.

On the host (``work_dir`` is ``/home/docker`` by default, as in the tutorial)::

    WORK/certs/HOST.key, HOST.crt     the registry's key and certificate (root only)
    WORK/certs/ca.crt                 what clients trust (public)
    WORK/certs/ca.key                 never kept here: with tls_ca it lives on the runner
    WORK/auth/htpasswd                the registry's users (bcrypt)
    WORK/docker-compose.yml           the registry's stack file
    WORK/portainer-agent-stack.yml    Portainer's stack file
    WORK/mirror/config.yml            the pull-through cache's configuration (root only)
    WORK/mirror-stack.yml             its stack file
    /etc/docker/certs.d/NAME:PORT/    Docker's trust for the registry, one per name

In the swarm: the stack ``stack_name`` with the service ``STACK_registry`` and the secrets
``registry_cert_*``, ``registry_key_*``, ``registry_htpasswd_*``; Portainer's stack
``portainer`` with ``portainer_portainer`` and ``portainer_agent`` and the secret
``portainer_admin_password``; the cache's stack ``mirror`` with ``mirror_registry`` and the
secrets ``mirror_config_*``, ``mirror_cert_*``, ``mirror_key_*``. Their data volumes, local
to the node that runs the service: ``STACK_registry`` (the registry's images),
``portainer_portainer_data`` and ``mirror_cache``. Docker names a stack's volume after the
stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .params import Params

REGISTRY_SERVICE = "registry"  # the service's name in the registry's stack file
REGISTRY_VOLUME = "registry"  # its volume's name there (Docker prefixes the stack's)
PORTAINER_STACK = "portainer"  # Portainer's documented stack name
PORTAINER_SERVICE = f"{PORTAINER_STACK}_portainer"
AGENT_SERVICE = f"{PORTAINER_STACK}_agent"
PORTAINER_VOLUME = f"{PORTAINER_STACK}_portainer_data"
MIRROR_STACK = "mirror"  # the pull-through cache (runbook_lib.mirror)
MIRROR_SERVICE = f"{MIRROR_STACK}_registry"
MIRROR_VOLUME = f"{MIRROR_STACK}_cache"


def trust_dirs(names: list[str], port: int) -> list[str]:
    """Docker's per-registry trust folders: ``/etc/docker/certs.d/NAME:PORT`` (an IPv6
    address in brackets)."""
    return [f"/etc/docker/certs.d/{f'[{n}]' if ':' in n else n}:{port}" for n in names]


@dataclass(frozen=True)
class Names:
    # Files and folders on the host.
    work_dir: str
    certs: str
    auth: str
    key: str
    cert: str
    ca_key: str
    ca_cert: str
    htpasswd: str
    stack_file: str
    portainer_stack_file: str
    mirror_config: str
    mirror_stack_file: str
    # Swarm objects.
    stack: str
    registry_service: str
    registry_volume: str
    portainer_stack: str
    portainer_service: str
    agent_service: str

    @classmethod
    def of(cls, work_dir: str, registry_host: str, stack: str = "manager") -> Names:
        certs = f"{work_dir}/certs"
        return cls(
            work_dir=work_dir,
            certs=certs,
            auth=f"{work_dir}/auth",
            key=f"{certs}/{registry_host}.key",
            cert=f"{certs}/{registry_host}.crt",
            ca_key=f"{certs}/ca.key",
            ca_cert=f"{certs}/ca.crt",
            htpasswd=f"{work_dir}/auth/htpasswd",
            stack_file=f"{work_dir}/docker-compose.yml",
            portainer_stack_file=f"{work_dir}/portainer-agent-stack.yml",
            mirror_config=f"{work_dir}/mirror/config.yml",
            mirror_stack_file=f"{work_dir}/mirror-stack.yml",
            stack=stack,
            registry_service=f"{stack}_{REGISTRY_SERVICE}",
            registry_volume=f"{stack}_{REGISTRY_VOLUME}",
            portainer_stack=PORTAINER_STACK,
            portainer_service=PORTAINER_SERVICE,
            agent_service=AGENT_SERVICE,
        )

    @property
    def portainer_volume(self) -> str:
        return PORTAINER_VOLUME

    @property
    def mirror_volume(self) -> str:
        return MIRROR_VOLUME

    @property
    def trusted(self) -> tuple[str, ...]:
        """The files root trusts (the folders above them are checked with them)."""
        return (
            self.key,
            self.cert,
            self.ca_key,
            self.ca_cert,
            self.htpasswd,
            self.stack_file,
            self.portainer_stack_file,
            self.mirror_config,
            self.mirror_stack_file,
        )


def of(p: Params) -> Names:
    return Names.of(p.work_dir, p.registry_host, p.stack_name)
