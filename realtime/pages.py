"""The demo page and the staff dashboard."""

urlpatterns: list = []
