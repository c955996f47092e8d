#!/usr/bin/env python3
"""Run django_canal's tests with Django's test runner.

    /usr/bin/python3 python/runtests.py [-v N] [test labels...]

The tests start their own redis-server (it must be on PATH). To test another
Django, put it first on PYTHONPATH, e.g. the output of
scripts/debian-django.sh trixie.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("labels", nargs="*", default=["tests"])
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    parser.add_argument("--failfast", action="store_true")
    args = parser.parse_args()

    sys.path[:0] = [HERE, os.path.join(HERE, "tests")]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

    import django
    import redis
    from django.conf import settings
    from django.test.utils import get_runner

    try:
        server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.split(" v=")[1].split()[0]
    except (OSError, IndexError):
        server = "not found"
    print(
        "Python %s, Django %s (%s), redis-py %s, redis-server %s"
        % (sys.version.split()[0], django.get_version(), os.path.dirname(django.__file__),
           redis.__version__, server)
    )

    django.setup()
    base = get_runner(settings)

    class Runner(base):
        # Keep the result to print a closing "N passed, N failed" line.
        def run_suite(self, suite, **kwargs):
            self.result = super().run_suite(suite, **kwargs)
            return self.result

    runner = Runner(verbosity=args.verbosity, failfast=args.failfast, interactive=False)
    failures = runner.run_tests(args.labels)
    result = getattr(runner, "result", None)
    if result is not None:
        failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
        skipped = len(result.skipped)
        passed = result.testsRun - failed - skipped - len(result.expectedFailures)
        print("django_canal: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
