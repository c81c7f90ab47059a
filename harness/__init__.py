"""mlgrade: grade machine-learning take-home assignments in hardened sandboxes."""

__version__ = "0.1.0"
