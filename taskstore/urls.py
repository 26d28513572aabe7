"""REST API URLs (mounted under /api/)."""

urlpatterns: list = []
