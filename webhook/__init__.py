"""ServiceEntry Guard: an admission webhook that guards Istio's service registry."""

__version__ = "0.1.0"
