#!/usr/bin/env python3
"""Django's command-line utility for the article's project (TokenAuth).

Run it with Debian's Python, which has Django and the REST framework
(apt-get install python3-django python3-djangorestframework
python3-djangorestframework-simplejwt python3-redis):

    /usr/bin/python3 manage.py migrate
"""

import os
import sys
from pathlib import Path

# django_canal lives in the repository's python/ directory: put it on the path
# so that the example runs from a checkout without `pip install ./python`.
CANAL_PYTHON = Path(__file__).resolve().parents[3] / "python"
if CANAL_PYTHON.is_dir() and str(CANAL_PYTHON) not in sys.path:
    sys.path.insert(0, str(CANAL_PYTHON))


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "TokenAuth.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
