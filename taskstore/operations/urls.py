"""The operations REST API's URLs (included by ``taskstore.urls`` under ``ops/``)."""

from django.urls import path

from taskstore.operations import views

urlpatterns = [
    path("ops/workers/", views.workers, name="ops-workers"),
    path("ops/queues/", views.queues, name="ops-queues"),
    path("ops/stats/", views.stats, name="ops-stats"),
    path("ops/actions/", views.actions_view, name="ops-actions"),
]
