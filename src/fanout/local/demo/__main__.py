"""``python -m fanout.local.demo``: the demo page's server, as ``fanout dev`` starts it."""

from fanout.local.demo.server import main

main()
