"""`postee ui`: the web page for the people on call (see views.py for the routes)."""
