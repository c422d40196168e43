"""Test hook: kill this process (os._exit, no cleanup) at a chosen point."""

import os

_writes = os.environ.get("CRASH_AFTER_WRITES")
_batches = os.environ.get("CRASH_AFTER_BATCHES")
_count = [0]


def _crash_after(limit):
    _count[0] += 1
    if _count[0] > int(limit):
        os._exit(137)


if _writes == "exchange":
    import newsletter.publish.writer as _writer

    _real_exchange = _writer._exchange

    def _exchange(a, b):
        if _real_exchange(a, b):  # the new tree is in, the old one not yet removed
            os._exit(137)
        raise RuntimeError("this file system cannot exchange paths: the test needs one")

    _writer._exchange = _exchange
elif _writes == "commit":
    import newsletter.publish.writer as _writer

    _writer._exchange = lambda a, b: False  # as on a file system without renameat2 exchange
    _real_rename = os.rename

    def _rename(src, dst):
        _real_rename(src, dst)
        if str(src).endswith("public"):  # public -> .public.old done; staging not yet in
            os._exit(137)

    _writer.os.rename = _rename
elif _writes:
    import newsletter.publish.writer as _writer

    _write = _writer.SiteWriter.write

    def _counted_write(self, rel, data):
        _crash_after(_writes)
        return _write(self, rel, data)

    _writer.SiteWriter.write = _counted_write
if _batches:
    import functools

    import newsletter.state.subscribers as _subs

    try:
        import newsletter.state.csv_import as _impl
    except ImportError:  # the import lived in subscribers.py before
        _impl = _subs
    _subs.import_csv = functools.partial(_impl.import_csv, batch_size=10)
    _write_batch = _impl._write_batch

    def _counted_batch(*args, **kwargs):
        result = _write_batch(*args, **kwargs)  # committed when it returns
        _crash_after(int(_batches) - 1)
        return result

    _impl._write_batch = _counted_batch
