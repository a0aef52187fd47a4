"""WSGI entry point: ``gunicorn -w 2 wsgi:app``."""

from storefront import create_app

app = create_app()
