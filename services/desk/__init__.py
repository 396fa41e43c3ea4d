"""The case workers' web desk (`povwatch desk`): server-rendered pages over the case operations of
services/cases/store.py. sessions (signed cookie, CSRF) and forms (filters, step forms, labels) are pure; app is
the FastAPI application; server binds the socket and runs it on uvicorn."""
