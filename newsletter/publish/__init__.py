"""Stage "publish": the archive site, the feeds and the atomic writer."""
