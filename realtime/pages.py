"""URLs of the example project's own pages: the demo page and the staff dashboard (views in realtime.views)."""

from django.urls import path

from realtime import views

urlpatterns = [
    path("", views.demo, name="demo"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/data/", views.dashboard_data, name="dashboard-data"),
]
