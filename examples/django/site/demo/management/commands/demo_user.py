"""manage.py demo_user [--admin] USERNAME PASSWORD: create (or reset) a user
without prompts; --admin makes them a superuser, who may use /admin/."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a user with the given password, or set the password of an existing one."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("password")
        parser.add_argument("--email", default="", help="e-mail address (optional)")
        parser.add_argument(
            "--admin", action="store_true", help="staff and superuser: may use /admin/"
        )

    def handle(self, *args, username, password, email, admin, **options):
        if not username.strip():
            raise CommandError("username must not be empty")
        if not password:
            raise CommandError("password must not be empty")
        User = get_user_model()
        # One save for a new user: saving an existing one with a new password
        # closes their sockets (REALTIME_USER_SIGNALS), which a new user has none of.
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        created = user is None
        if created:
            user = User(**{User.USERNAME_FIELD: username})
        user.set_password(password)
        if email:
            user.email = email
        if admin:
            user.is_staff = user.is_superuser = True
        user.save()
        verb = "created" if created else "updated"
        kind = "admin" if user.is_superuser else "user"
        self.stdout.write("%s %s %s (id %s)" % (verb, kind, user.get_username(), user.pk))
