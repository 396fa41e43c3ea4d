"""The intake API: the intake channels (docs/feeds.md, "The intake channels") over HTTP (app) on pure mapping code."""
