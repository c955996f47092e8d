def extra_claims(user, request):
    return {"email": user.email, "staff": user.is_staff, "path": request.path if request else None}
