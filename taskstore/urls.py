"""REST API URLs (mounted under /api/); the operations console's under ops/ (staff only)."""

from django.urls import path

from taskstore import api, openapi
from taskstore.operations.urls import urlpatterns as operations_urlpatterns

app_name = "taskstore"

urlpatterns = [
    path("tasks/", api.tasks, name="tasks"),
    path("tasks/<str:task_id>/", api.task_detail, name="task"),
    path("tasks/<str:task_id>/events/", api.task_events, name="task-events"),
    path("groups/<str:group_id>/", api.group_detail, name="group"),
    path("openapi.json", openapi.openapi_view, name="openapi"),
    *operations_urlpatterns,
]
