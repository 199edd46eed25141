"""Helper library behind the swarm-registry runbook notebooks.

Pure modules (``tls``, ``htpasswd``, ``stackfile``, ``params``) know nothing of hosts;
step modules (``engine``, ``swarm``, ``registry`` ...) take a :class:`~runbook_lib.hosts.Host`
and return :class:`~runbook_lib.steps.StepResult` values; notebooks call step functions
and display what they return.
"""

__version__ = "0.1.0"
