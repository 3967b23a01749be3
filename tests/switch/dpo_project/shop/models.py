"""A project's own app whose rows point at post_office's emails and templates."""

from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=20, unique=True)
    #: The confirmation mail sent for the order.
    confirmation = models.ForeignKey("post_office.Email", null=True, blank=True, on_delete=models.SET_NULL)
    #: The mail that reminded the customer to pay (added by the second migration).
    reminder = models.ForeignKey(
        "post_office.Email", null=True, blank=True, on_delete=models.SET_NULL, related_name="reminded_orders"
    )

    def __str__(self):
        return self.number


class Campaign(models.Model):
    name = models.CharField(max_length=100)
    template = models.ForeignKey("post_office.EmailTemplate", on_delete=models.PROTECT)

    def __str__(self):
        return self.name
