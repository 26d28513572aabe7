"""The demo page and the staff dashboard."""

from django.urls import path

from realtime import views

urlpatterns = [
    path("", views.demo, name="demo"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/data/", views.dashboard_data, name="dashboard-data"),
]
