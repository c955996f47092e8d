from django.db import models


class Article(models.Model):
    title = models.CharField(max_length=200)

    def __str__(self):
        return self.title


class Invoice(models.Model):
    number = models.CharField(max_length=50)

    def __str__(self):
        return self.number
