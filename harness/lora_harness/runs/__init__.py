"""One harness run, whatever the front end: settings, the run context, suites, self-test, doctor, distributed ranks and the report document."""
