from django.contrib import admin

from .models import Article, Invoice

admin.site.register(Article)
admin.site.register(Invoice)
