"""URLs: the demo page and dashboard, the REST API, login and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/", include("taskstore.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", include("realtime.pages")),
]
