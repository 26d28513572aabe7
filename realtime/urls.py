"""URLs: the demo page and dashboard, the REST API, login, the admin and /metrics."""

from django.contrib import admin
from django.urls import include, path

from taskstore.operations.metrics import metrics_view

urlpatterns = [
    path("api/", include("taskstore.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # Prometheus scrapes this (docs/operations.md).
    path("metrics", metrics_view, name="metrics"),
    path("", include("realtime.pages")),
]
