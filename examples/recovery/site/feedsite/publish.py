"""python -m feedsite.publish GROUP COUNT RATE: publish COUNT feed items to GROUP
with history, RATE a second, numbered from 1; prints each (offset, epoch)."""

import sys
import time

import django

django.setup()

from django_canal.history import publish  # noqa: E402


def main(group, count, rate):
    start = time.monotonic()
    for n in range(1, count + 1):
        offset, epoch = publish(group, {"type": "feed.item", "n": n, "text": "item %d" % n})
        print(offset, epoch, flush=True)
        # Paced from the start, so a slow publish does not slow the rate down.
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
