"""The demo page of ``fanout dev``: a web page on ``fanout.js`` and a pretend domain service behind it.

Dev only, like the rest of ``fanout.local``: nothing in production imports it. ``server.py`` serves the
page and its JSON API, ``domain.py`` holds the demo's data and publishes its changes, ``static/`` is the
page itself (plain HTML, CSS and an ES module).
"""
