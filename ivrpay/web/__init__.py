"""The operator and admin screen: server-rendered pages on the service's HTTP listener.

``install_screen(app)`` mounts it on the root application that ``ivrpay.api.app.init_app``
builds (the API stays under ``/api/v1``).
"""

from ivrpay.web.app import install_screen

__all__ = ["install_screen"]
