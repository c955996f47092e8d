#!/usr/bin/env python3
"""Django's command-line utility for the Canal demo site.

Run it with Debian's Python, which has Django (apt-get install python3-django):

    /usr/bin/python3 manage.py migrate
"""

import os
import sys
from pathlib import Path

# django_canal lives in the repository's python/ directory: put it on the path
# so that the demo runs from a checkout without `pip install ./python`.
CANAL_PYTHON = Path(__file__).resolve().parents[3] / "python"
if CANAL_PYTHON.is_dir() and str(CANAL_PYTHON) not in sys.path:
    sys.path.insert(0, str(CANAL_PYTHON))


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_project.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Use Debian's /usr/bin/python3 with python3-django "
            "installed (apt-get install python3-django python3-redis), or a virtualenv "
            "with Django and redis-py."
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
