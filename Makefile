# Every target creates the virtualenv it needs when it is missing.
PYTHON ?= python3
PY312 ?= $(shell command -v pyenv >/dev/null 2>&1 && echo "$$(pyenv root)/versions/3.12.1/bin/python" || echo python3.12)
VENV := .venv
VENV61 := .venv-django61
VENVPKG := .venv-package
BIN := $(VENV)/bin
BIN61 := $(VENV61)/bin
PYTEST_ARGS ?=

.PHONY: test-scale test-tasks package-check messages messages-check test-e2e test test-postgres test-mysql test-django61 test-faults test-switch test-switch-mailer test-celery lint docs demo run migrations-check clean bench bench-dpo-setup

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,lint,docs]'
	touch $@

$(BIN61)/.installed: pyproject.toml
	test -x $(BIN61)/python || $(PY312) -m venv $(VENV61)
	$(BIN61)/pip install -q --upgrade pip
	$(BIN61)/pip install -q -e '.[test]' 'Django>=6.1,<6.2'
	touch $@

test: $(BIN)/.installed
	POST_OFFICE_TEST_DB=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: $(BIN)/.installed
	./scripts/ensure-services postgres
	POST_OFFICE_TEST_DB=postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

test-mysql: $(BIN)/.installed
	./scripts/ensure-services mysql
	POST_OFFICE_TEST_DB=mysql $(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault tests behind docs/reliability.md, on each database (they also run within the targets above).
FAULT_TESTS := tests/test_faults.py tests/test_setup_errors.py tests/test_partial_recipients.py \
	tests/test_bad_rows.py tests/test_recovery.py tests/test_runner.py::RunnerDeliveryTest \
	tests/test_attachments.py::MissingFileAtDeliveryTest tests/test_attachments.py::FullDiskAtEnqueueTest
test-faults: $(BIN)/.installed
	./scripts/ensure-services postgres mysql
	for db in sqlite postgres mysql; do \
		echo "== fault tests on $$db"; \
		POST_OFFICE_TEST_DB=$$db $(BIN)/python -m pytest -q $(FAULT_TESTS) $(PYTEST_ARGS) || exit 1; \
	done

# Switching a django-post_office database in place (tests/switch/): django-post_office 3.12.0 in its own
# virtualenv (.venv-dpo, scripts/dpo-venv) fills SQLite, PostgreSQL and MariaDB through its own API; then this
# package runs check, migrate and send_queued_mail on them. POST_OFFICE_SWITCH_DBS=sqlite,postgres picks databases.
# tests/switch/test_dpo_kill.py kills migrate (SIGKILL) again and again inside the conversion before a plain migrate
# finishes it (POST_OFFICE_SWITCH_KILL_DBS; MariaDB only for the 3.0.4-born database, not on 3.8.0's).
# Then older schemas: a database django-post_office 3.8.0 made and filled (SQLite), and databases django-post_office
# 3.0.4 created (Django 2.2, Python 3.9: JSON in text columns) and 3.12.0 upgraded and filled. Every run goes on
# after a failure; the target fails if any did.
DPO38 := DPO_VERSION=3.8.0 DPO_DJANGO='Django>=4.2,<5' DPO_VENV=.venv-dpo38
DPO30 := DPO_VERSION=3.0.4 DPO_DJANGO='Django>=2.2,<2.3' DPO_EXTRA='psycopg2-binary<2.10' DPO_PYTHON=python3.9 DPO_VENV=.venv-dpo30
test-switch: $(BIN)/.installed
	./scripts/ensure-services postgres mysql
	./scripts/dpo-venv && $(DPO38) ./scripts/dpo-venv && $(DPO30) ./scripts/dpo-venv
	status=0; \
	echo "== django-post_office 3.12.0"; \
	POST_OFFICE_SWITCH=1 $(BIN)/python -m pytest tests/switch $(PYTEST_ARGS) || status=1; \
	echo "== django-post_office 3.8.0 (SQLite)"; \
	POST_OFFICE_SWITCH=1 POST_OFFICE_SWITCH_DBS=sqlite POST_OFFICE_SWITCH_KILL_DBS= DPO_VENV=.venv-dpo38 POST_OFFICE_SWITCH_DPO_VERSION=3.8.0 \
		DPO_SWITCH_SHOP_MIGRATIONS=shop.migrations_old_dpo $(BIN)/python -m pytest tests/switch $(PYTEST_ARGS) || status=1; \
	echo "== created by django-post_office 3.0.4, upgraded to 3.12.0"; \
	POST_OFFICE_SWITCH=1 POST_OFFICE_SWITCH_BORN_VENV=.venv-dpo30 POST_OFFICE_SWITCH_KILL_DBS=mysql \
		$(BIN)/python -m pytest tests/switch $(PYTEST_ARGS) || status=1; \
	exit $$status

# Importing a django-mailer queue (tests/switch_mailer/): django-mailer 2.3.2 in its own virtualenv (.venv-mailer,
# scripts/mailer-venv) fills SQLite, PostgreSQL and MariaDB through its own API; then this package runs migrate,
# import_mailer_queue (dry run, real, again) and send_queued_mail to an SMTP sink. POST_OFFICE_SWITCH_DBS picks databases.
test-switch-mailer: $(BIN)/.installed
	./scripts/ensure-services postgres mysql
	./scripts/mailer-venv
	POST_OFFICE_SWITCH_MAILER=1 $(BIN)/python -m pytest tests/switch_mailer $(PYTEST_ARGS)

# Django Tasks with real workers (tests/tasks_workers/): django-tasks-db's db_worker processes deliver through the
# claim engine to an SMTP sink process, on PostgreSQL and MariaDB (rollback, 5,000 emails through two workers, a
# worker SIGKILLed mid-run). Settings tests.tasks_settings (the DatabaseBackend on a queue of its own). Django 5.2
# runs the django-tasks backport, Django 6.1 (its own virtualenv) the framework in core, django.tasks.
test-tasks: $(BIN)/.installed $(BIN61)/.installed
	./scripts/ensure-services postgres mysql
	for bin in $(BIN) $(BIN61); do for db in postgres mysql; do \
		echo "== Django Tasks workers on $$db, $$($$bin/python -m django --version)"; \
		POST_OFFICE_TASKS_WORKERS=1 POST_OFFICE_TEST_DB=$$db $$bin/python -m pytest -s -p no:cacheprovider \
			--ds=tests.tasks_settings tests/tasks_workers $(PYTEST_ARGS) || exit 1; \
	done; done

# Celery with real brokers and real `celery worker` processes (tests/celery_workers/): Redis (database 8) and
# RabbitMQ, on PostgreSQL and MariaDB: a rollback sends no task, 5,000 emails through two workers arrive once each,
# a worker SIGKILLed mid-run loses nothing, the priority queue delivers during a bulk run. About 4 minutes.
test-celery: $(BIN)/.installed
	./scripts/ensure-services postgres mysql redis rabbitmq
	for db in postgres mysql; do \
		echo "== Celery workers on $$db"; \
		POST_OFFICE_CELERY_WORKERS=1 POST_OFFICE_TEST_DB=$$db $(BIN)/python -m pytest -s -p no:cacheprovider \
			tests/celery_workers $(PYTEST_ARGS) || exit 1; \
	done

# Many hosts against one database (tests/scale/), after the Celery and Django Tasks targets: eight simulated hosts,
# each a process tree with its own hostname (unshare --uts, so root) and TMPDIR, two each of send_queued_mail run as
# cron would, runmailer, celery worker (Redis database 9) and db_worker, deliver 20,000 emails queued in 200 commits
# on PostgreSQL and MariaDB, each exactly once; then 1, 2, 4 and 8 runmailer hosts drain the same batch from a sink
# taking 20 ms a message, and the rate must grow. Figures in POST_OFFICE_SCALE_RESULTS (JSON; by default
# post_office_scale_results.json in the temporary directory). The many-host part takes about 5 minutes.
test-scale: $(BIN)/.installed test-tasks test-celery
	./scripts/ensure-services postgres mysql redis
	for db in postgres mysql; do \
		echo "== many hosts on $$db"; \
		POST_OFFICE_SCALE=1 POST_OFFICE_TEST_DB=$$db $(BIN)/python -m pytest -s -p no:cacheprovider \
			--ds=tests.scale.settings tests/scale $(PYTEST_ARGS) || exit 1; \
	done

# Browser tests: Playwright for Python drives Debian's Chromium headless against a live test server.
# Screenshots of every screen go to e2e-screenshots/ (git-ignored).
$(BIN)/.e2e-installed: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test,e2e]'
	touch $@
test-e2e: $(BIN)/.e2e-installed
	./scripts/ensure-chromium
	POST_OFFICE_E2E=1 POST_OFFICE_TEST_DB=sqlite $(BIN)/python -m pytest -p no:cacheprovider --ds=tests.e2e.settings tests/e2e $(PYTEST_ARGS)

test-django61: $(BIN61)/.installed
	POST_OFFICE_TEST_DB=sqlite $(BIN61)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check post_office tests migrations_tests example $(wildcard benchmarks)
	$(BIN)/ruff format --check post_office
	$(BIN)/mypy post_office
	$(BIN)/lint-imports --no-cache

migrations-check: $(BIN)/.installed
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python -m django makemigrations --check --dry-run post_office

# Update the translation catalogues from the code (post_office/locale/<lang>/LC_MESSAGES/*.po) and compile
# them (.mo, committed, so installing the package needs no gettext). tests/test_locale.py checks they agree.
LOCALES := de
messages: $(BIN)/.installed
	./scripts/ensure-gettext
	cd post_office && for lang in $(LOCALES); do \
		DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.. ../$(BIN)/python -m django makemessages -l $$lang --no-obsolete --no-location && \
		DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.. ../$(BIN)/python -m django makemessages -d djangojs -l $$lang --no-obsolete --no-location || exit 1; \
	done
	cd post_office && DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.. ../$(BIN)/python -m django compilemessages

# The catalogues hold every translatable string of the code (run `make messages` when this fails).
messages-check: $(BIN)/.installed
	./scripts/ensure-gettext
	cd post_office && for lang in $(LOCALES); do \
		DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.. ../$(BIN)/python -m django makemessages -l $$lang --no-obsolete --no-location -v0 && \
		DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.. ../$(BIN)/python -m django makemessages -d djangojs -l $$lang --no-obsolete --no-location -v0 || exit 1; \
	done
	git diff --exit-code -I '^"POT-Creation-Date' -- post_office/locale || \
		(echo "post_office/locale is out of date: run 'make messages' and translate the new strings." >&2; exit 1)

# The package as a user gets it (scripts/package_check.py): sdist and wheel built into dist/ with no build warning,
# twine check --strict, their contents against the checkout, and the demo run from the wheel installed in a fresh
# virtualenv outside the checkout. Its own virtualenv holds the build tools.
$(VENVPKG)/bin/.installed:
	test -x $(VENVPKG)/bin/python || $(PYTHON) -m venv $(VENVPKG)
	$(VENVPKG)/bin/pip install -q --upgrade pip
	$(VENVPKG)/bin/pip install -q 'build>=1.2' 'twine>=6.1'
	touch $@
package-check: $(VENVPKG)/bin/.installed
	$(VENVPKG)/bin/python scripts/package_check.py

docs: $(BIN)/.installed
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

demo: $(BIN)/.installed
	$(BIN)/python example/demo.py

# The admin on the demo's own database (example/demo.sqlite3): run `make demo` first to fill it.
run: $(BIN)/.installed
	@test -f example/demo.sqlite3 || echo "example/demo.sqlite3 does not exist yet: run 'make demo' first to fill it with mail."
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_demo_admin
	@echo "Open http://127.0.0.1:8000/admin/ and log in as admin / admin"
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# The benchmark suite (not part of the tests; about 20 minutes). BENCH_ARGS e.g. "--n 10000 --db postgres".
# django-post_office runs beside ours when .venv-dpo exists (make bench-dpo-setup).
BENCH_ARGS ?=
PY311 ?= python3.11
bench: $(BIN)/.installed
	./scripts/ensure-services postgres
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# django-post_office 3.12.0 in its own virtualenv: it has the same import name as this package.
bench-dpo-setup:
	PY311=$(PY311) ./scripts/dpo-venv

clean:
	rm -rf $(VENV) $(VENV61) $(VENVPKG) dist docs/_build example/*.sqlite3
