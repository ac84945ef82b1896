"""Hub side of the testbed: header authenticator, settings -> JupyterHub config."""

__all__ = ["__version__"]
__version__ = "0.1.0"
