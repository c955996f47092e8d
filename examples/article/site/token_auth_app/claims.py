def user_claims(user, request):
    """What django_canal's /auth/ tells the Go server about a user besides id
    and username (REALTIME_TICKET_CLAIMS): the article's consumer prints the
    email; the Go consumer reads it as c.User().String("email")."""
    return {"email": user.email}
