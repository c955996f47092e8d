"""The User admin with django_canal's "disconnect" action.

Select users in /admin/auth/user/, choose "Disconnect from the realtime server"
and press Go: every socket of theirs, on every Go server, closes with 4403
"disconnected by an admin", and leaves the rooms' presence (the other users see
them go). Their Django sessions stay: to keep them out, also untick "active",
which closes their sockets too (REALTIME_USER_SIGNALS).
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django_canal import realtime

User = get_user_model()


class UserAdmin(DjangoUserAdmin):
    actions = [realtime.disconnect_selected]


admin.site.unregister(User)
admin.site.register(User, UserAdmin)
