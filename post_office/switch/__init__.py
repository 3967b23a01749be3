"""Switching in place: bringing in what another mail app left in the database.

``mailer`` imports django-mailer's queue, logs and do-not-send list
(``manage.py import_mailer_queue``); ``mailer_pickle`` reads its pickled
messages with an unpickler that builds nothing but a Django email message.
"""
