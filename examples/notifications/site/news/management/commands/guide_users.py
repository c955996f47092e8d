"""Create the example's users: an editor who changes articles and invoices in
the admin, and two staff readers who may each view one of the two models.

    python manage.py guide_users PASSWORD
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

USERS = {
    "editor": ["add_article", "change_article", "view_article", "add_invoice", "change_invoice", "view_invoice"],
    "articles": ["view_article"],
    "invoices": ["view_invoice"],
}


class Command(BaseCommand):
    help = "Create the users editor, articles and invoices (staff) with PASSWORD."

    def add_arguments(self, parser):
        parser.add_argument("password")

    def handle(self, *args, password, **options):
        User = get_user_model()
        for name, codenames in USERS.items():
            user, _ = User.objects.get_or_create(username=name, defaults={"is_staff": True})
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.user_permissions.set(Permission.objects.filter(content_type__app_label="news", codename__in=codenames))
            self.stdout.write(f"{name}: {', '.join(codenames)}")
