"""pytest plugin: every health check becomes a test item, for pre-merge gates.

    pytest --lora-model fixture:tiny --lora-suite gate

takes the same LoRA and expectation options as `lora-harness run` (declared once in
lora_harness.runs.options, here prefixed --lora-). The plugin is inert unless --lora-model or
--lora-suite is given, so installing the harness never changes unrelated test runs.
The session fixture `lora_run` hands users' own tests the run context (trained model,
fingerprints, generations) to write their own checks; `lora_watch` puts the gate's checks
around a training loop of the user's own (see lora_harness.runs.watch).
"""

from __future__ import annotations

import pytest

from lora_harness.runs import options, suites

_CONTEXT = pytest.StashKey[object]()
_SETTINGS = pytest.StashKey[object]()


def pytest_addoption(parser) -> None:
    group = parser.getgroup("lora-harness", "LoRA health checks (mlx-lora-harness)")
    options.add_to_pytest(group, options.RUN_OPTIONS)


def _active(config) -> bool:
    return bool(config.getoption("lora_model") or config.getoption("lora_suite"))


def pytest_configure(config) -> None:
    """Bad --lora- options are a usage error before collection, never an INTERNALERROR."""
    if _active(config):
        from lora_harness.core.errors import InputError
        from lora_harness.models.sources import resolve

        settings = _settings(config)
        try:
            resolve(settings.model)  # a wrong --lora-model is a usage error too
        except InputError as error:
            raise pytest.UsageError(f"lora-harness: {_respell(str(error))}") from None


def _settings(config):
    if _SETTINGS not in config.stash:
        from lora_harness.core.errors import InputError
        from lora_harness.runs.given import Given
        from lora_harness.runs.run import settings_from
        from lora_harness.runs.validate import pytest_flag

        given = Given.of(options.values_from_pytest(config, options.RUN_OPTIONS))
        try:
            config.stash[_SETTINGS] = settings_from(given, spell=pytest_flag)
        except InputError as error:
            raise pytest.UsageError(f"lora-harness: {_respell(str(error))}") from None
    return config.stash[_SETTINGS]


def _respell(message: str) -> str:
    """Name the plugin's flags (--lora-rank) where a deeper layer named the CLI's (--rank)."""
    import re

    names = [o.name for o in options.RUN_OPTIONS] + ["suite", "check"]
    for name in sorted(names, key=len, reverse=True):
        message = re.sub(rf"(?<![\w-])--{name}(?![\w-])", f"--lora-{name}", message)
    return message


def _context(config):
    """The run context, prepared once per session on first use; a failure is kept, not retried."""
    if _CONTEXT not in config.stash:
        from lora_harness.runs.run import prepare

        settings = _settings(config)
        try:
            ctx = prepare(settings)
            suites.plan(ctx, settings.check_names)  # e.g. untrained generations before training
        except Exception as error:
            config.stash[_CONTEXT] = PrepareFailed(error)
        else:
            config.stash[_CONTEXT] = ctx
    ctx = config.stash[_CONTEXT]
    if isinstance(ctx, PrepareFailed):
        raise ctx
    return ctx


class PrepareFailed(Exception):
    """The run could not be prepared (a bad model or data path): every item reports this once."""

    def __init__(self, error: Exception):
        super().__init__(_respell(f"{error.__class__.__name__}: {error}"))
        self.error = error


class HealthCheckFailed(Exception):
    """Raised by an item whose check failed; carries the result for the report."""

    def __init__(self, result):
        super().__init__(result.message)
        self.result = result


class HealthCheckItem(pytest.Item):
    def __init__(self, *, check_name: str, **kwargs):
        super().__init__(**kwargs)
        self.check_name = check_name

    def runtest(self) -> None:
        from lora_harness.runs.suites import all_checks

        result = all_checks()[self.check_name]().run(_context(self.config))
        self.user_properties.append(("observed", result.observed))
        self.user_properties.append(("expected", result.expected))
        if result.status == "skip":
            pytest.skip(result.message)
        if result.status == "warn":
            import warnings

            warnings.warn(f"{self.check_name}: {result.message}", stacklevel=1)
        if result.status in ("fail", "error"):
            raise HealthCheckFailed(result)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, PrepareFailed):
            return f"lora-harness could not prepare the run: {excinfo.value}"
        if isinstance(excinfo.value, HealthCheckFailed):
            r = excinfo.value.result
            return (
                f"{r.name} {r.status}: {r.message}\n"
                f"  observed: {r.observed}\n  expected: {r.expected}\n  remedy:   {r.remedy}"
            )
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return "lora-harness", None, f"lora-harness::{self.check_name}"


class HealthCheckSuite(pytest.Collector):
    def collect(self):
        for name in _settings(self.config).check_names:
            yield HealthCheckItem.from_parent(self, name=name, check_name=name)


def pytest_collection_modifyitems(session, config, items) -> None:
    if not _active(config):
        return
    suite = HealthCheckSuite.from_parent(session, name="lora-harness", nodeid="lora-harness")
    items.extend(suite.collect())


@pytest.fixture(scope="session")
def lora_run(pytestconfig):
    """The harness run context: .lora_model, .training, .generations, .expectations, ..."""
    if not _active(pytestconfig):
        pytest.skip("lora_run needs --lora-model (or --lora-suite)")
    return _context(pytestconfig)


@pytest.fixture
def lora_watch():
    """`lora_watch(model, optimizer, lora=..., config=...)` is `lora_harness.watch()`; a watch
    the test did not `assert_healthy()` itself is asserted when the test ends."""
    from lora_harness.runs.watch import watch

    started = []

    def start(*args, **kwargs):
        started.append(watch(*args, **kwargs))
        return started[-1]

    yield start
    for unchecked in (w for w in started if not w.asserted and w.finished):
        unchecked.assert_healthy()
