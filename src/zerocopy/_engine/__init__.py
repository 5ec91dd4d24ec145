"""Each kernel transfer written once, for every form to drive (issue 23): :mod:`.sendfile`."""
