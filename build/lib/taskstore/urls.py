"""REST API URLs (mounted under /api/)."""

from django.urls import path

from taskstore import api

app_name = "taskstore"

urlpatterns = [
    path("tasks/", api.tasks, name="tasks"),
    path("tasks/<str:task_id>/", api.task_detail, name="task"),
    path("tasks/<str:task_id>/events/", api.task_events, name="task-events"),
    path("groups/<str:group_id>/", api.group_detail, name="group"),
]
