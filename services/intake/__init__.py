"""The intake API: the channels of FEEDS.md ("The intake channels") over HTTP (app) on pure mapping code."""
