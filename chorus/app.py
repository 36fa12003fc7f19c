"""What ``chorus run`` serves: the app that :func:`chorus.web.create_app` makes.

It lives inside the package (the repository's app.py, for ``chainlit run app.py``, says the same)
so that ``chorus run`` serves the page from an installed wheel too.
"""

from chorus.web import create_app

create_app()
