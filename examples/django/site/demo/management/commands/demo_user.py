"""manage.py demo_user USERNAME PASSWORD: create (or reset) a user without prompts."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a user with the given password, or set the password of an existing one."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("password")
        parser.add_argument("--email", default="", help="e-mail address (optional)")

    def handle(self, *args, username, password, email, **options):
        if not username.strip():
            raise CommandError("username must not be empty")
        if not password:
            raise CommandError("password must not be empty")
        User = get_user_model()
        user, created = User.objects.get_or_create(**{User.USERNAME_FIELD: username})
        user.set_password(password)
        if email:
            user.email = email
        user.save()
        verb = "created" if created else "updated"
        self.stdout.write("%s user %s (id %s)" % (verb, user.get_username(), user.pk))
