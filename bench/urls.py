"""No URLs: the bench configurations without taskstore serve nothing, and must not import its views."""

urlpatterns: list[object] = []
