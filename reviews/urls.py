"""Portal pages of access reviews, under /reviews/."""

from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("reviews/", views.review_list, name="list"),
    path("reviews/open/", views.review_open, name="open"),
    path("reviews/<int:review_id>/", views.review_page, name="detail"),
    path("reviews/<int:review_id>/answer/", views.review_answer, name="answer"),
]
