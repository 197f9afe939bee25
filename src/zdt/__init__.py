"""zdt: update running Linux services without downtime."""

__version__ = "0.1.0"
