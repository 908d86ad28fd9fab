"""ServiceEntry Guard: an admission webhook that guards Istio's service registry."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("SEGUARD_PURE") == "1":
    # The core's Python source, even where mypyc's extensions are built beside it (an
    # extension module is found before a .py of the same name).
    from webhook._pure import prefer_source as _prefer_source

    _prefer_source()
