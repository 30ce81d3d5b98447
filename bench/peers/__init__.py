"""Peer benchmarks: the same no-op workload on Celery and Procrastinate.

``run.py`` is the orchestrator (runs in the project venv, imports neither peer);
``celery_app.py`` and ``procrastinate_app.py`` run inside their own peer venvs
under ``bench/.venvs/`` and report back as one JSON line on stdout.
"""
