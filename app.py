"""The chat page, for ``chainlit run app.py`` from a clone: the same app ``chorus run`` serves.

Chainlit runs this file; everything is in :func:`chorus.web.create_app`.
"""

from chorus.web import create_app

create_app()
