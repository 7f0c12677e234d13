"""The admin UI at ``/admin/``: server-rendered pages for the operator and merchant staff."""
