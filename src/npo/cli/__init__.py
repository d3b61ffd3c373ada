"""The ``npo`` command line. Each command lives in its own module of this package and
exposes ``register(app)``; :mod:`npo.cli.main` collects them."""
