"""The `project` fixture (a project with the stand-in app, stopped at the end) for every CLI
test module here."""

from tests.provision.test_cli_local import project

__all__ = ["project"]
