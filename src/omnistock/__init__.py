"""omnistock: one live truth about stock across every node, and the brain that routes orders."""

__version__ = "0.1.0"
