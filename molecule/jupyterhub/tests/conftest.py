"""The hub token and the first user's server (fixtures of test_jupyterhub.py) for
every test module of the scenario."""

from test_jupyterhub import server, token  # noqa: F401 - fixtures
