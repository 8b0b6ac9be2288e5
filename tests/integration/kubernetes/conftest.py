"""Kubernetes fixtures: an admin client of the local API server and a fresh namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from tests.kube_support import fresh_namespace, open_admin


@pytest.fixture
async def admin() -> AsyncIterator[client.ApiClient]:
    api = await open_admin()
    yield api
    await api.close()


@pytest.fixture
async def namespace(admin: client.ApiClient) -> AsyncIterator[str]:
    async with fresh_namespace(admin) as name:
        yield name
