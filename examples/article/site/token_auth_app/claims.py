from django.contrib.contenttypes.models import ContentType


def user_claims(user, request):
    """What django_canal's /auth/ tells the Go server about a user besides id
    and username (REALTIME_TICKET_CLAIMS), read once per socket:

    * email: the article's consumer prints it (c.User().String("email"));
    * content_types: the IDs of the content types the user may view or
      change, the websockets guide's get_content_types: the Go consumer sends
      an admin event only to users whose list has its content type
      (c.User().Int64s("content_types")).
    """
    return {
        "email": user.email,
        # Three queries: Django caches all permissions on the first has_perm.
        "content_types": [
            ct.id
            for ct in ContentType.objects.all()
            if user.has_perm(f"{ct.app_label}.view_{ct.model}")
            or user.has_perm(f"{ct.app_label}.change_{ct.model}")
        ],
    }
