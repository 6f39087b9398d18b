"""With INTEROP_STRICT=1 (CI, which installs every client and tool) a skipped test
fails: a missing tool must not pass as a silent skip."""

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("INTEROP_STRICT") == "1" and report.skipped:
        report.outcome = "failed"
        report.longrepr = "skipped in strict mode (INTEROP_STRICT=1): %s" % (report.longrepr,)
