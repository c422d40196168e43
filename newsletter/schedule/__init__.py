"""The scheduler: cron lines (a leaf config uses), decisions, the fire log and lease, the runner.

`schedule` decides *when*, never *how*: the runner calls the same build and send path as the
commands. Nothing is imported here, so `newsletter.schedule.cron` stays a cheap leaf.
"""
