"""The local stack without Docker: Kafka, S3 (SeaweedFS), PostgreSQL, the Caddy edge, the apps.

from devstack import Stack
stack = Stack()                   # repo root and run dir (<repo>/.run) by default
info = stack.up(apps=False)       # infra only; info.started lists what this call started
...
stack.down(only=info.started)     # stop exactly that
"""

from devstack.config import DEFAULT_APPS, AppSpec, Settings
from devstack.errors import ComponentError, StackError
from devstack.stack import ComponentResult, ComponentStatus, Stack, StackInfo, repo_root

__all__ = [
    "DEFAULT_APPS",
    "AppSpec",
    "ComponentError",
    "ComponentResult",
    "ComponentStatus",
    "Settings",
    "Stack",
    "StackError",
    "StackInfo",
    "repo_root",
]
